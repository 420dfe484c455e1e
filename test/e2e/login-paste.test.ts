/**
 * `login` from any terminal: the browser signs in, but its redirect back to the loopback listener
 * never arrives (the browser is on another machine); the user pastes the address it ended on into
 * the terminal instead. The built CLI runs with a real pseudo-terminal as stdin
 * (test/support/pty-stdin.py), Chromium is the browser (test/support/browser-driver.ts, mode
 * `capture`), and the realm is the Keycloak-shaped oidc-provider.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { requireChromium } from "../support/chromium.ts";
import { BROWSER_COMMAND, readDriverResult } from "../support/driver.ts";
import { assertNoSecrets, CLI, makeWorkspace, runCli, type Workspace } from "../support/cli.ts";
import { startRealm, type Realm } from "../support/realm.ts";

const CACHE_HOST = "cache.example.test";
const PTY = fileURLToPath(new URL("../support/pty-stdin.py", import.meta.url));
const PROMPT = "If the browser cannot reach this machine, paste the address it ends on here";

let realm: Realm;
const workspaces: Workspace[] = [];

async function userWorkspace(): Promise<Workspace> {
  const ws = await makeWorkspace();
  workspaces.push(ws);
  await ws.writeConfig({ issuer: realm.issuer, client_id: realm.publicClientId, cache_host: CACHE_HOST });
  return ws;
}

/** The CLI with a terminal as stdin: `type` a line into it, wait for stderr to show something. */
function loginOnTerminal(ws: Workspace, args: string[], env: Record<string, string>) {
  const child = spawn("python3", [PTY, process.execPath, CLI, ...args], {
    env: { ...ws.env, ...env },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  const waiters: { re: RegExp; from: number; resolve: () => void }[] = [];
  const check = () => {
    for (const w of [...waiters]) {
      if (w.re.test(stderr.slice(w.from))) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  };
  child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  child.stderr.setEncoding("utf8").on("data", (d: string) => {
    stderr += d;
    check();
  });
  const exit = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  // A CLI that ended before what is typed arrives: its exit code and stderr tell, not the EPIPE.
  child.stdin.on("error", () => {});
  let exited = false;
  void exit.then(() => (exited = true));
  return {
    type(line: string) {
      child.stdin.write(`${line}\n`);
    },
    /** Resolves once stderr (from `from` on) matches; fails if the CLI ends first. */
    waitFor(re: RegExp, from = 0): Promise<void> {
      return new Promise((resolve, reject) => {
        waiters.push({ re, from, resolve });
        check();
        void exit.then(() => reject(new Error(`the CLI ended before ${re}:\n${stderr}`)));
      });
    },
    get stderr() {
      return stderr;
    },
    get stdout() {
      return stdout;
    },
    get exited() {
      return exited;
    },
    async done(): Promise<number | null> {
      child.stdin.end();
      return exit;
    },
    /** The exit, with stdin left open (nothing typed, no end of file). */
    ended: exit,
    kill() {
      child.kill("SIGKILL");
    },
  };
}

async function waitForFile(path: string): Promise<string> {
  for (let i = 0; i < 600; i++) {
    const text = await readFile(path, "utf8").catch(() => "");
    if (text !== "") return text;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${path} was never written`);
}

describe("login: paste the address the browser ended on", { concurrency: false }, () => {
  before(async () => {
    requireChromium();
    realm = await startRealm({});
  });

  after(async () => {
    await realm?.stop();
    await Promise.all(workspaces.map((ws) => ws.cleanup()));
  });

  test("the redirect never reaches the listener: a pasted address signs in; a wrong state is refused and the sign-in keeps waiting", async () => {
    const ws = await userWorkspace();
    const capture = join(ws.dir, "captured-address");
    const cli = loginOnTerminal(
      ws,
      ["--verbose", "login", "--browser-command", BROWSER_COMMAND, "--timeout", "2m"],
      {
        DRIVER_MODE: "capture",
        DRIVER_CAPTURE: capture,
        DRIVER_RESULT: join(ws.dir, "driver.json"),
      },
    );
    try {
      await cli.waitFor(new RegExp(PROMPT));
      const address = await waitForFile(capture);
      const url = new URL(address);
      const code = url.searchParams.get("code");
      assert.ok(code !== null && url.searchParams.get("state") !== null, "the browser ended on a callback");
      ws.secrets.add(code);
      // The browser is done, and the listener got nothing: nothing is written yet.
      await assert.rejects(stat(ws.netrcPath), { code: "ENOENT" });

      let from = cli.stderr.length;
      cli.type("hello, this is no address");
      await cli.waitFor(/not the address this sign-in waits for.*still waiting/, from);

      from = cli.stderr.length;
      const wrongState = new URL(address);
      wrongState.searchParams.set("state", "not-the-state-of-this-sign-in");
      cli.type(wrongState.href);
      await cli.waitFor(/state does not match\); still waiting/, from);
      assert.equal(cli.exited, false, "the sign-in keeps waiting after a wrong state");
      await assert.rejects(stat(ws.netrcPath), { code: "ENOENT" });

      cli.type(address);
      await cli.waitFor(/Signed in as alice/);
      assert.match(
        cli.stderr,
        /pasted address accepted/,
        "the code came from the terminal, not the listener",
      );
      assert.doesNotMatch(cli.stderr, /callback received/);
      const exitCode = await cli.done();
      assert.equal(exitCode, 0, cli.stderr);
      assert.equal((await readDriverResult(join(ws.dir, "driver.json"))).ok, true, "the browser is done");
    } catch (e) {
      const driver = await readFile(join(ws.dir, "driver.json"), "utf8").catch(() => "(no driver result)");
      throw new Error(`${(e as Error).message}\nCLI stderr:\n${cli.stderr}\ndriver: ${driver}`, { cause: e });
    } finally {
      if (!cli.exited) cli.kill();
    }

    const netrc = await readFile(ws.netrcPath, "utf8");
    assert.match(netrc, new RegExp(`machine ${CACHE_HOST.replace(/\./g, "\\.")}`));
    assert.equal((await stat(ws.netrcPath)).mode & 0o777, 0o600);
    const status = await runCli(ws, ["status"]);
    assert.equal(status.code, 0, status.stderr);
    // The pasted address (and the code in it) is never printed back.
    for (const [what, text] of [
      ["stdout", cli.stdout],
      ["stderr", cli.stderr],
    ] as const) {
      assertNoSecrets(ws, text, what);
      assert.ok(!text.includes("not-the-state-of-this-sign-in"), `${what} echoed a pasted address`);
      assert.ok(!text.includes("hello, this is no address"), `${what} echoed a pasted line`);
    }
  });

  test(
    "on a terminal, a redirect that reaches the listener still wins, and login ends without input",
    { timeout: 120_000 },
    async () => {
      const ws = await userWorkspace();
      const cli = loginOnTerminal(ws, ["--verbose", "login", "--browser-command", BROWSER_COMMAND], {
        DRIVER_MODE: "login",
        DRIVER_RESULT: join(ws.dir, "driver.json"),
      });
      try {
        await cli.waitFor(new RegExp(PROMPT));
        await cli.waitFor(/Signed in as alice/);
        // stdin stays open (nothing typed, no end of file): the terminal must not keep login running.
        assert.equal(await cli.ended, 0, cli.stderr);
        assert.equal((await readDriverResult(join(ws.dir, "driver.json"))).ok, true, "the browser is done");
      } finally {
        if (!cli.exited) cli.kill();
      }
      assert.match(cli.stderr, /callback received with a matching state/);
      assert.equal((await runCli(ws, ["status"])).code, 0);
    },
  );

  test("without a terminal on stdin, login does not offer to paste", async () => {
    const ws = await userWorkspace();
    const r = await runCli(ws, ["login", "--no-browser", "--timeout", "1s"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /timed out/);
    assert.ok(!r.stderr.includes(PROMPT), r.stderr);
  });
});
