/**
 * The README's shell lines, run as a new user would, in README order: every line of the ```sh
 * blocks of "Install", "Quick start" and "Server quick start", each with bash in a fresh HOME
 * whose directories do not exist yet. The CLI is the one the Install lines build and install (npm
 * pack in a clean clone, npm install -g into a temp prefix); the sign-in is a real browser sign-in
 * at the embedded realm. Only the differences this machine forces are applied (below, each with
 * its reason), and a line that cannot run here must be listed in NOT_HERE: any other new README
 * line is run and must succeed, so the README cannot drift from the tool.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { requireChromium } from "../support/chromium.ts";
import { cleanClone } from "../support/clone.ts";
import {
  assertNoSecrets,
  harvestSecrets,
  makeWorkspace,
  netrcPassword,
  ROOT,
  type Workspace,
} from "../support/cli.ts";
import { BROWSER_COMMAND } from "../support/driver.ts";
import { startRealm, type Realm } from "../support/realm.ts";

const SECTIONS = ["Install", "Quick start", "Server quick start"];

/** README lines that cannot run on this machine, and why. */
const NOT_HERE: Record<string, string> = {
  "nix run . -- status":
    "needs nixpkgs, which this machine cannot fetch (nix/ci-check.sh checks the flake's outputs; `nix flake check` builds the package)",
  "nix profile install .": "needs nixpkgs, as `nix run .`",
  "npm install -g nix-cache-login": "the package is not on the npm registry yet (the README says so)",
};

/** The README's example values, and what this machine has instead. */
const ISSUER = "https://sso.example.org/realms/engineering";
const CACHE_HOST = "cache.example.org";

/** The shell lines of a README section's ```sh blocks: continuations joined, comments dropped. */
export function shellLines(readme: string, section: string): string[] {
  const start = readme.indexOf(`\n## ${section}\n`);
  assert.notEqual(start, -1, `README.md has no "## ${section}" section`);
  const end = readme.indexOf("\n## ", start + 1);
  const text = readme.slice(start, end === -1 ? undefined : end);
  const lines: string[] = [];
  for (const [, block = ""] of text.matchAll(/^ *```sh\n([\s\S]*?)^ *```$/gm)) {
    let pending = "";
    for (const raw of block.split("\n")) {
      const line = raw.trim();
      if (line.endsWith("\\")) {
        pending += `${line.slice(0, -1).trim()} `;
        continue;
      }
      const whole = `${pending}${line}`.replace(/\s+#\s.*$/, "").trim();
      pending = "";
      if (whole !== "" && !whole.startsWith("#")) lines.push(whole);
    }
  }
  return lines;
}

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

function bash(line: string, o: { cwd: string; env: Record<string, string>; stdin?: string }): Promise<Ran> {
  return new Promise((resolve) => {
    const child = spawn("bash", ["-e", "-o", "pipefail", "-c", line], {
      cwd: o.cwd,
      env: o.env,
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), 180_000);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    // A line that never reads its input may exit before this is written: that EPIPE says nothing
    // about the line (its exit code does).
    child.stdin.on("error", () => {});
    child.stdin.end(o.stdin ?? "");
  });
}

describe("the README's Install, Quick start and Server quick start lines", () => {
  let realm: Realm;
  let ws: Workspace;
  let clone: string;
  let etc: string;
  let unitDir: string;
  const readme = { lines: [] as { section: string; line: string }[] };

  before(async () => {
    // The Quick start's `login` line signs in through Chromium.
    requireChromium();
    const text = await readFile(join(ROOT, "README.md"), "utf8");
    for (const section of SECTIONS)
      for (const line of shellLines(text, section)) readme.lines.push({ section, line });
    realm = await startRealm({ tls: false });
    ws = await makeWorkspace();
    ws.secrets.add(realm.serviceClientSecret);
    clone = await cleanClone(join(ws.dir, "checkout"));
    etc = join(ws.dir, "etc");
    unitDir = join(ws.dir, "etc", "systemd", "system");
  });
  after(async () => {
    await realm?.stop();
    await ws?.cleanup();
  });

  test("every line runs and succeeds, or is listed as not runnable here", async () => {
    for (const section of SECTIONS) {
      assert.ok(
        readme.lines.some((l) => l.section === section),
        `no shell lines in the README's "${section}"`,
      );
    }
    const prefix = join(ws.dir, "npm-global");
    const env: Record<string, string> = {
      ...ws.env,
      // The global install goes to a temp prefix, and its bin/ comes first, as for npm's own prefix.
      PATH: `${join(prefix, "bin")}:${ws.env.PATH ?? ""}`,
      npm_config_prefix: prefix,
      npm_config_cache: join(ws.dir, "npm-cache"),
      // Only the npm registry is reachable from CI, and nothing here needs it: a request is a bug.
      npm_config_offline: "true",
      npm_config_update_notifier: "false",
      npm_config_audit: "false",
      npm_config_fund: "false",
      // "login" opens the browser: headless Chromium, which signs in at the realm as alice.
      BROWSER: BROWSER_COMMAND,
      DRIVER_TIMEOUT_MS: "90000",
      // The server's timer units go to a temp directory, not /etc/systemd/system.
      NIX_CACHE_LOGIN_SYSTEM_UNIT_DIR: unitDir,
    };
    const ran = new Map<string, Ran>();
    for (const { section, line } of readme.lines) {
      if (NOT_HERE[line] !== undefined) {
        console.log(`not here: ${line}: ${NOT_HERE[line]}`);
        continue;
      }
      // The differences this machine forces: the realm instead of sso.example.org, a temp dir for
      // /etc, and the checkout's node_modules (installed by `npm ci` already, and shared by the clone).
      const here = line
        .replaceAll(ISSUER, realm.issuer)
        .replaceAll("/etc/", `${etc}/`)
        .replace(/^npm ci && /, "");
      // The one line that reads a terminal: the client secret, pasted.
      const stdin = here.includes("cat >") ? `${realm.serviceClientSecret}\n` : "";
      const res = await bash(here, { cwd: clone, env, stdin });
      await harvestSecrets(ws);
      assertNoSecrets(ws, res.stdout + res.stderr, line);
      assert.equal(res.code, 0, `${section}: ${line}\n${res.stderr}`);
      ran.set(line, res);
    }
    console.log(`ran ${ran.size} README lines, ${readme.lines.length - ran.size} not runnable here`);

    // What each step should have left behind.
    const bin = join(prefix, "bin", "nix-cache-login");
    assert.ok(existsSync(bin), "npm install -g put nix-cache-login in the prefix's bin/");
    for (const [file, start] of [
      [".local/share/bash-completion/completions/nix-cache-login", /complete|_nix-cache-login/],
      [".zfunc/_nix-cache-login", /^#compdef nix-cache-login/],
      [".config/fish/completions/nix-cache-login.fish", /^(#|complete)/m],
    ] as const) {
      const text = await readFile(join(ws.home, file), "utf8");
      assert.match(text, start, file);
    }
    const bashCheck = await bash(
      `bash -n ${join(ws.home, ".local/share/bash-completion/completions/nix-cache-login")}`,
      {
        cwd: ws.dir,
        env,
      },
    );
    assert.equal(bashCheck.code, 0, bashCheck.stderr);

    assert.match(await readFile(ws.configPath, "utf8"), new RegExp(`issuer = "${realm.issuer}"`));
    const token = netrcPassword(
      (await readFile(ws.netrcPath, "utf8")).replace(/\n(login|password)/g, " $1"),
      CACHE_HOST,
    );
    assert.ok(token !== undefined && token.length > 100, "login wrote the cache host's netrc entry");
    assert.match(
      ran.get("nix-cache-login status")?.stdout ?? "",
      /access token: +valid/,
      "status after login",
    );
    assert.ok(existsSync(join(ws.env.XDG_CONFIG_HOME as string, "systemd", "user", "nix-cache-login.timer")));

    const serverNetrc = join(etc, "nix", "netrc");
    const serverToken = netrcPassword(
      (await readFile(serverNetrc, "utf8")).replace(/\n(login|password)/g, " $1"),
      CACHE_HOST,
    );
    assert.ok(serverToken !== undefined && serverToken !== token, "service-account wrote the server's netrc");
    assert.equal(statSync(join(etc, "nix-cache-login", "client-secret")).mode & 0o777, 0o600);
    assert.ok(
      existsSync(join(unitDir, "nix-cache-login-server.timer")),
      "timer install --system wrote its units",
    );
  });
});
