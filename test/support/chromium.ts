// Debian's Chromium, headless, driven through playwright-core over CDP. Playwright never downloads a
// browser here: we start /usr/bin/chromium ourselves (own process group, fresh profile), connect to
// its DevTools endpoint, and at the end kill the whole group and remove the profile with retries
// (Chromium's helpers can outlive the main process). See TESTBED.md, "Chromium under test".

import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser } from "playwright-core";

export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
export const CHROMIUM_INSTALL = "install chromium: apt-get install -y --no-install-recommends chromium";

/** A missing browser is a failure of the test environment, never a reason to skip. */
export function requireChromium(): void {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found; ${CHROMIUM_INSTALL}`);
}

export const CHROMIUM_FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--no-default-browser-check",
  "--disable-dev-shm-usage",
  // Keep the browser on loopback: every other name fails to resolve.
  "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
];

/** A timeout for Promise.race that does not keep the process alive once the race is won. */
function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

export interface RunningChromium {
  browser: Browser;
  pid: number;
  close(): Promise<void>;
}

export async function launchChromium(log: (line: string) => void = () => {}): Promise<RunningChromium> {
  requireChromium();
  const profile = await mkdtemp(join(tmpdir(), "ncl-chromium-"));
  const child = spawn(
    CHROMIUM,
    [...CHROMIUM_FLAGS, `--user-data-dir=${profile}`, "--remote-debugging-port=0", "about:blank"],
    {
      detached: true,
      stdio: ["ignore", "ignore", "pipe"],
    },
  );
  const pid = child.pid;
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    child.once("exit", () => {
      exited = true;
      resolve();
    }),
  );

  const killGroup = async () => {
    if (pid !== undefined) {
      try {
        process.kill(-pid, "SIGKILL");
      } catch {
        // Already gone.
      }
    }
    if (!exited) await Promise.race([exit, delay(5000)]);
    // Helpers may still be writing into the profile for a moment: retry.
    await rm(profile, { recursive: true, force: true, maxRetries: 20, retryDelay: 100 });
  };

  try {
    const wsEndpoint = await new Promise<string>((resolve, reject) => {
      let buffered = "";
      const timer = setTimeout(
        () => reject(new Error(`chromium did not start within 30 s: ${buffered.slice(-500)}`)),
        30_000,
      );
      child.once("error", (e) => {
        clearTimeout(timer);
        reject(new Error(`cannot start ${CHROMIUM}: ${e.message}; ${CHROMIUM_INSTALL}`));
      });
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`chromium exited with code ${code} before it listened: ${buffered.slice(-500)}`));
      });
      child.stderr?.setEncoding("utf8");
      child.stderr?.on("data", (chunk: string) => {
        buffered += chunk;
        const m = /DevTools listening on (ws:\/\/\S+)/.exec(buffered);
        if (m?.[1] !== undefined) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      });
    });
    // Keep draining stderr so Chromium never blocks on a full pipe.
    child.stderr?.removeAllListeners("data");
    child.stderr?.resume();
    log(`chromium pid ${pid} at ${wsEndpoint}`);
    const { chromium } = await import("playwright-core");
    const browser = await chromium.connectOverCDP(wsEndpoint);
    return {
      browser,
      pid: pid as number,
      close: async () => {
        await Promise.race([browser.close().catch(() => {}), delay(3000)]);
        await killGroup();
      },
    };
  } catch (e) {
    await killGroup();
    throw e;
  }
}
