// The browser driver (browser-driver.ts) as the e2e tests start it: as the CLI's browser command,
// or spawned on an address the CLI printed, and the summary it writes when it is done.
import type { ChildProcess } from "node:child_process";
import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";

export const DRIVER = fileURLToPath(new URL("./browser-driver.ts", import.meta.url));
// A path, not a file: URL, so the command also works from $BROWSER (a list separated by ':').
export const TSX = fileURLToPath(import.meta.resolve("tsx"));
/** The driver as a browser command: the CLI appends the URL as the last argument. */
export const BROWSER_COMMAND = `'${process.execPath}' --import '${TSX}' '${DRIVER}'`;

/** The driver writes its summary last, once Chromium is gone (the CLI does not wait for it). */
export async function readDriverResult(file: string): Promise<Record<string, unknown>> {
  let last: unknown;
  for (let i = 0; i < 600; i++) {
    try {
      return JSON.parse(await readFile(file, "utf8")) as Record<string, unknown>;
    } catch (e) {
      last = e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`the browser driver wrote no result to ${file}`, { cause: last });
}

/** The driver on `url` (as a user would open an address the CLI printed); resolves when it exits. */
export function spawnDriver(
  url: string,
  env: Record<string, string>,
): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, ["--import", TSX, DRIVER, url], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  return new Promise((resolve) => child.on("close", (code) => resolve({ code, stderr })));
}

/** Calls `onMatch` once, the first time `child`'s stderr so far matches `re`. */
export function watchStderr(child: ChildProcess, re: RegExp, onMatch: (m: RegExpExecArray) => void): void {
  let seen = "";
  let fired = false;
  child.stderr?.on("data", (chunk: Buffer | string) => {
    seen += String(chunk);
    const m = re.exec(seen);
    if (m && !fired) {
      fired = true;
      onMatch(m);
    }
  });
}
