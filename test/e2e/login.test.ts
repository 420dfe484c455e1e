/**
 * `login` end to end: the built CLI as a subprocess against the Keycloak-shaped realm, with Debian's
 * Chromium (driven by test/support/browser-driver.ts through playwright-core) as the user's browser.
 * A missing Chromium fails these tests; it never skips them.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import * as net from "node:net";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { requireChromium } from "../support/chromium.ts";
import { BROWSER_COMMAND, readDriverResult, spawnDriver, watchStderr } from "../support/driver.ts";
import {
  assertNoSecrets,
  CLI,
  harvestSecrets,
  makeWorkspace,
  portIsFree,
  runCli,
  type RunResult,
  type Workspace,
} from "../support/cli.ts";
import { startRealm, type Realm } from "../support/realm.ts";
import { ensureUser, runAs, USER_A, type TestUser } from "../support/users.ts";
import { freePort } from "../support/ports.ts";

const CACHE_HOST = "cache.example.test";

let realm: Realm;
const workspaces: Workspace[] = [];
let runs = 0;

async function userWorkspace(extra: Record<string, unknown> = {}): Promise<Workspace> {
  const ws = await makeWorkspace();
  workspaces.push(ws);
  await ws.writeConfig({
    issuer: realm.issuer,
    client_id: realm.publicClientId,
    cache_host: CACHE_HOST,
    ...extra,
  });
  return ws;
}

interface LoginRun extends RunResult {
  driver: Record<string, unknown> | undefined;
}

/** Runs the CLI; with a driver mode, the driver is the browser command and its summary is read back. */
async function run(
  ws: Workspace,
  args: string[],
  opts: {
    driver?: string;
    /** Hand the driver over in $BROWSER instead of --browser-command. */
    viaEnv?: boolean;
    env?: Record<string, string | undefined>;
    onSpawn?: (c: ChildProcess) => void;
  } = {},
): Promise<LoginRun> {
  const resultFile = join(ws.dir, `driver-${runs++}.json`);
  const env: Record<string, string | undefined> = { ...opts.env };
  const argv = [...args];
  if (opts.driver !== undefined) {
    if (opts.viaEnv === true) env.BROWSER = BROWSER_COMMAND;
    else argv.push("--browser-command", BROWSER_COMMAND);
    Object.assign(env, { DRIVER_MODE: opts.driver, DRIVER_RESULT: resultFile });
  }
  const res = await runCli(ws, argv, { env, onSpawn: opts.onSpawn, timeoutMs: 90_000 });
  const what = `nix-cache-login ${args.join(" ")}`;
  // The driver writes its summary last, once Chromium is gone (the CLI does not wait for it).
  const driver = opts.driver === undefined ? undefined : await readDriverResult(resultFile);
  if (typeof driver?.code === "string") {
    // The authorization code never shows up in the CLI's output (runCli checked the tokens).
    assert.ok(
      !res.stdout.includes(driver.code) && !res.stderr.includes(driver.code),
      `${what} printed the code`,
    );
  }
  return { ...res, driver };
}

async function assertNothingWritten(ws: Workspace): Promise<void> {
  await assert.rejects(stat(ws.netrcPath), { code: "ENOENT" }, "the netrc must not exist");
  const state = await readdir(ws.stateDir).catch(() => [] as string[]);
  assert.deepEqual(
    state.filter((f) => !f.endsWith(".lock")),
    [],
    "no token state may be written",
  );
}

async function netrcPassword(ws: Workspace): Promise<string> {
  const text = await readFile(ws.netrcPath, "utf8");
  // Our entry, one keyword per line (the token's line holds nothing else).
  const m = new RegExp(
    `^machine ${CACHE_HOST.replace(/\./g, "\\.")}\nlogin (\\S+)\npassword (\\S+)$`,
    "m",
  ).exec(text);
  assert.ok(m, `no entry for ${CACHE_HOST} in the netrc`);
  return m[2] as string;
}

async function stateFile(ws: Workspace): Promise<Record<string, unknown>> {
  const files = (await readdir(ws.stateDir)).filter((f) => f.endsWith(".json"));
  assert.equal(files.length, 1, `one state file expected, got ${files.join(", ")}`);
  return JSON.parse(await readFile(join(ws.stateDir, files[0] as string), "utf8")) as Record<string, unknown>;
}

function portFrom(stderr: string): number {
  const m = /http:\/\/127\.0\.0\.1:(\d+)\/[A-Za-z0-9_-]{22}\n/.exec(stderr);
  assert.ok(m, `no loopback URL in: ${stderr}`);
  return Number(m[1]);
}

test("Debian's Chromium is installed (the browser sign-in tests need it)", () => {
  requireChromium();
});

describe("login", { concurrency: false }, () => {
  before(async () => {
    // No Chromium means the browser tests cannot prove anything: fail loudly, never skip.
    requireChromium();
    realm = await startRealm({
      deviceInterval: 1,
      users: { alice: "alice-password", bob: "bob-password" },
    });
  });

  after(async () => {
    await realm?.stop();
    await Promise.all(workspaces.map((ws) => ws.cleanup()));
  });

  test("browser sign-in: exit 0, netrc entry 0600 in a 0700 directory, valid status; refresh and logout", async () => {
    const ws = await userWorkspace();
    const res = await run(ws, ["login", "--verbose"], { driver: "login" });
    assert.equal(res.code, 0, res.stderr);
    assert.match(
      res.stderr,
      /If your browser did not open, visit: http:\/\/127\.0\.0\.1:\d+\/[A-Za-z0-9_-]{22}\n/,
    );
    assert.match(res.stderr, /^Signed in as alice at /m);
    assert.match(res.stderr, /access token: {2}valid, expires in/);
    assert.match(res.stderr, /refresh token: valid, expires in/);
    assert.equal(res.stdout, "", "login prints nothing on stdout");
    assert.equal(res.driver?.ok, true, JSON.stringify(res.driver));
    assert.equal(res.driver?.status, 200);
    assert.equal(res.driver?.title, "Signed in");
    assert.match(String(res.driver?.text), /You can close this tab/);

    const token = await netrcPassword(ws);
    assert.ok(token.split(".").length === 3, "the netrc holds the JWT access token");
    assert.equal((await stat(ws.netrcPath)).mode & 0o777, 0o600);
    assert.equal((await stat(dirname(ws.netrcPath))).mode & 0o777, 0o700);
    const state = await stateFile(ws);
    assert.equal(state.username, "alice");
    assert.equal(typeof state.refresh_token, "string");

    const status = await run(ws, ["status", "--json"]);
    assert.equal(status.code, 0, status.stderr);
    type Report = { present: boolean; valid: boolean; expires_at: string | null };
    const json = JSON.parse(status.stdout) as {
      netrc_entry: boolean;
      mode: string;
      username: string | null;
      access_token: Report;
      refresh_token: Report;
    };
    assert.equal(json.netrc_entry, true);
    assert.equal(json.mode, "user");
    assert.equal(json.username, "alice");
    assert.equal(json.access_token.valid, true);
    assert.ok(json.access_token.expires_at !== null && Date.parse(json.access_token.expires_at) > Date.now());
    assert.equal(json.refresh_token.present, true);
    assert.equal(json.refresh_token.valid, true);

    // The refresh token from the browser sign-in works, and logout makes it unusable.
    const before = await netrcPassword(ws);
    const refreshed = await run(ws, ["refresh"]);
    assert.equal(refreshed.code, 0, refreshed.stderr);
    assert.notEqual(await netrcPassword(ws), before, "refresh wrote a new access token");
    const current = (await stateFile(ws)).refresh_token as string;

    const out = await run(ws, ["logout"]);
    assert.equal(out.code, 0, out.stderr);
    assert.doesNotMatch(await readFile(ws.netrcPath, "utf8"), new RegExp(CACHE_HOST.replace(/\./g, "\\.")));
    assert.deepEqual(
      (await readdir(ws.stateDir)).filter((f) => f.endsWith(".json")),
      [],
    );

    const dead = await fetch(`${realm.issuer}/protocol/openid-connect/token`, {
      method: "POST",
      body: new URLSearchParams({
        grant_type: "refresh_token",
        refresh_token: current,
        client_id: realm.publicClientId,
      }),
    });
    assert.equal(dead.status, 400);
    assert.deepEqual(await dead.json(), { error: "invalid_grant", error_description: "Session not active" });
  });

  test("the platform's opener starts the browser; it does not inherit $NIX_CACHE_LOGIN_LAUNCHER, from --browser-command either", async () => {
    // The Nix wrapper's name for itself is for `timer install` alone: a shell started from the
    // browser would hand it to an npm-installed CLI, whose unit would then run the wrapper.
    const launcher = "/nix/store/00000000000000000000000000000000-nix-cache-login-0.1.0/bin/nix-cache-login";
    const ws = await userWorkspace();
    const byCommand = await run(ws, ["login"], {
      driver: "login",
      env: { NIX_CACHE_LOGIN_LAUNCHER: launcher },
    });
    assert.equal(byCommand.code, 0, byCommand.stderr);
    assert.equal(byCommand.driver?.ok, true, JSON.stringify(byCommand.driver));
    assert.equal(byCommand.driver?.launcher, null);

    // No --browser-command and no $BROWSER: the `open` package runs xdg-open from PATH, here one
    // that starts the driver.
    const bin = join(ws.dir, "bin");
    await mkdir(bin);
    await writeFile(join(bin, "xdg-open"), `#!/bin/sh\nexec ${BROWSER_COMMAND} "$1"\n`, { mode: 0o755 });
    const resultFile = join(ws.dir, "opener.json");
    const byOpener = await runCli(ws, ["login", "--verbose", "--timeout", "60s"], {
      env: {
        PATH: `${bin}:${ws.env.PATH}`,
        DISPLAY: ":0",
        NIX_CACHE_LOGIN_LAUNCHER: launcher,
        DRIVER_MODE: "login",
        DRIVER_RESULT: resultFile,
      },
      timeoutMs: 90_000,
    });
    assert.equal(byOpener.code, 0, byOpener.stderr);
    assert.match(byOpener.stderr, /opened the browser with the platform's opener/);
    assert.doesNotMatch(byOpener.stderr, /could not open a browser/);
    const driver = await readDriverResult(resultFile);
    assert.equal(driver.ok, true, JSON.stringify(driver));
    assert.equal(driver.launcher, null);
  });

  test("device sign-in (--device) approved in the browser", async () => {
    const ws = await userWorkspace();
    let driverDone: ReturnType<typeof spawnDriver> | undefined;
    const resultFile = join(ws.dir, "device-driver.json");
    const res = await run(ws, ["login", "--device", "--verbose"], {
      onSpawn: (child) =>
        watchStderr(child, /^\s+(http:\/\/\S+\/device\?user_code=\S+)$/m, (m) => {
          driverDone = spawnDriver(m[1] as string, { DRIVER_MODE: "device", DRIVER_RESULT: resultFile });
        }),
    });
    assert.ok(driverDone, `no verification URI in: ${res.stderr}`);
    const driverRun = await driverDone;
    assert.equal(driverRun.code, 0, driverRun.stderr);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stderr, /and check that it shows the code [A-Z]{4}-[A-Z]{4}\n/);
    assert.match(res.stderr, /^Signed in as alice at /m);
    assert.equal(res.stdout, "", "no QR code when stdout is not a terminal");
    const driver = JSON.parse(await readFile(resultFile, "utf8")) as Record<string, unknown>;
    assert.equal(driver.title, "Device Login Successful");
    await netrcPassword(ws);
  });

  test("without a display and a browser command, login switches to the device flow", async () => {
    const ws = await userWorkspace();
    const res = await run(ws, ["login"], {
      env: { DISPLAY: undefined, WAYLAND_DISPLAY: undefined, BROWSER: undefined },
      onSpawn: (child) =>
        watchStderr(child, /and check that it shows the code (\S+)\n/, (m) => {
          void realm.approveDevice(m[1] as string);
        }),
    });
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stderr, /There is no display .*: signing in with a device code instead/);
    await netrcPassword(ws);
  });

  test("device sign-in denied: exit 1, nothing written; --timeout ends the wait", async () => {
    const ws = await userWorkspace();
    const denied = await run(ws, ["login", "--device"], {
      onSpawn: (child) =>
        watchStderr(child, /and check that it shows the code (\S+)\n/, (m) => {
          void realm.denyDevice(m[1] as string);
        }),
    });
    assert.equal(denied.code, 1, denied.stderr);
    assert.match(denied.stderr, /error: the sign-in was denied at 127\.0\.0\.1:\d+/);
    await assertNothingWritten(ws);

    const timedOut = await run(ws, ["login", "--device", "--timeout", "2s"]);
    assert.equal(timedOut.code, 1, timedOut.stderr);
    assert.match(timedOut.stderr, /error: timed out after 2s waiting for the sign-in to be approved/);
    await assertNothingWritten(ws);
  });

  test("device sign-in on a terminal shows a QR code", async () => {
    const ws = await userWorkspace();
    // script(1) (util-linux, always on Debian) gives the CLI a terminal; its output mixes stdout and stderr.
    const cli = `'${process.execPath}' '${CLI}' login --device`;
    const child = spawn("script", ["-qec", cli, "/dev/null"], {
      env: { ...ws.env, TERM: "xterm" } as NodeJS.ProcessEnv,
      stdio: ["pipe", "pipe", "pipe"],
    });
    let out = "";
    let approved = false;
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      out += d;
      const m = /shows the code (\S+)/.exec(out);
      if (m && !approved) {
        approved = true;
        void realm.approveDevice(m[1] as string);
      }
    });
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    assert.equal(code, 0, out);
    // Half blocks, two modules per character; a version 3+ code for this URL is at least 29 modules wide.
    const qrLines = out.split(/\r?\n/).filter((l) => /^[█▀▄ ]{29,}$/.test(l));
    assert.ok(qrLines.length >= 14, `no QR code in:\n${out}`);
    await netrcPassword(ws);
    await harvestSecrets(ws);
    assertNoSecrets(ws, out, "terminal output of login --device");
  });

  test("access_denied at the provider: error page, exit 1, nothing written", async () => {
    const ws = await userWorkspace();
    const res = await run(ws, ["login"], { driver: "deny", viaEnv: true });
    assert.equal(res.code, 1, res.stderr);
    assert.match(
      res.stderr,
      /error: the sign-in was denied at 127\.0\.0\.1:\d+: End-User aborted interaction \(access_denied\)/,
    );
    assert.equal(res.driver?.ok, true, JSON.stringify(res.driver));
    assert.equal(res.driver?.title, "Sign-in failed");
    assert.match(String(res.driver?.text), /End-User aborted interaction/);
    await assertNothingWritten(ws);
  });

  test("forged callbacks with a wrong state are ignored and the real sign-in completes (--port)", async () => {
    const ws = await userWorkspace();
    const port = await freePort();
    const res = await run(ws, ["login", "--verbose", "--port", String(port)], { driver: "forge" });
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stderr, new RegExp(`visit: http://127\\.0\\.0\\.1:${port}/[A-Za-z0-9_-]{22}\\n`));
    const forged = res.driver?.forged as { status: number; title: string }[];
    assert.deepEqual(
      forged.map((f) => [f.status, f.title]),
      [
        [400, "This sign-in response was ignored"],
        [400, "This sign-in response was ignored"],
        [400, "This sign-in response was ignored"],
        [404, "Not found"],
      ],
    );
    assert.equal(res.driver?.title, "Signed in");
    assert.equal((res.stderr.match(/ignored a callback whose state does not match/g) ?? []).length, 3);
    await netrcPassword(ws);
    assert.ok(await portIsFree(port), "the port is released");
  });

  test("--timeout: a clear message, exit 1, nothing written", async () => {
    const ws = await userWorkspace();
    const res = await run(ws, ["login", "--no-browser", "--timeout", "1s"]);
    assert.equal(res.code, 1, res.stderr);
    assert.match(
      res.stderr,
      /To sign in, open this URL in a browser: http:\/\/127\.0\.0\.1:\d+\/[A-Za-z0-9_-]{22}\n/,
    );
    assert.match(res.stderr, /error: timed out after 1s: no browser opened the sign-in address/);
    assert.match(res.stderr, /hint: .*--timeout/);
    assert.doesNotMatch(res.stderr, /sooner/);
    await assertNothingWritten(ws);
    assert.ok(await portIsFree(portFrom(res.stderr)));
  });

  test("--port already in use: a clear error, exit 1, nothing written", async () => {
    const ws = await userWorkspace();
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, "127.0.0.1", r));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      const res = await run(ws, ["login", "--no-browser", "--port", String(port)]);
      assert.equal(res.code, 1, res.stderr);
      assert.match(res.stderr, new RegExp(`error: port ${port} on 127\\.0\\.0\\.1 is already in use`));
      assert.match(res.stderr, /hint: .*--port/);
      await assertNothingWritten(ws);
    } finally {
      await new Promise((r) => blocker.close(r));
    }
  });

  test("Ctrl-C (SIGINT) while the browser is at the login page: exit 130, nothing written, port freed", async () => {
    const ws = await userWorkspace();
    const ready = join(ws.dir, "driver-ready");
    let child: ChildProcess | undefined;
    // One Ctrl-C: several stat() calls can be in flight when the file appears, and a third SIGINT
    // would find Node's default action (the second one exits at once with 130).
    let sent = false;
    const poll = setInterval(() => {
      void stat(ready).then(
        () => {
          clearInterval(poll);
          if (sent) return;
          sent = true;
          child?.kill("SIGINT");
        },
        () => undefined,
      );
    }, 50);
    const res = await run(ws, ["login"], {
      driver: "hold",
      env: { DRIVER_READY: ready },
      onSpawn: (c) => (child = c),
    });
    clearInterval(poll);
    assert.equal(res.code, 130, res.stderr);
    assert.match(res.stderr, /error: interrupted/);
    await assertNothingWritten(ws);
    assert.ok(await portIsFree(portFrom(res.stderr)), "the loopback port is free");
    assert.equal(res.driver?.ok, true, "the driver saw the loopback server go away");
  });

  test("another local user cannot take over the sign-in: a bare 403 for every path, even the real URL; a foreign Host is refused; the real URL still works", async () => {
    const other: TestUser = await ensureUser(USER_A);
    const ws = await userWorkspace();
    const resultFile = join(ws.dir, "takeover-driver.json");
    let attack: Promise<string[]> | undefined;
    let victim: ReturnType<typeof spawnDriver> | undefined;
    const res = await run(ws, ["login", "--no-browser", "--verbose"], {
      onSpawn: (child) =>
        watchStderr(child, /open this URL in a browser: (http:\/\/127\.0\.0\.1:(\d+)(\/\S+))\n/, (m) => {
          const [, url, port] = m as unknown as [string, string, string];
          const args = (path: string, extra: string[]) => [
            "-sS",
            "-o",
            "-",
            "-w",
            "\n%{http_code} %{redirect_url}",
            ...extra,
            `http://127.0.0.1:${port}${path}`,
          ];
          // The port is no secret (/proc/net/tcp lists it), nor is the URL (a browser's argv):
          // the attacker is another uid with curl.
          const curl = (path: string, ...extra: string[]) =>
            runAs(other, "curl", args(path, extra)).then((r) => `${r.stdout}${r.stderr}`);
          // A web page that rebinds its name to 127.0.0.1 runs in the user's own browser: same uid.
          const ownCurl = (path: string, ...extra: string[]) =>
            runAs({ name: "root", uid: 0, gid: 0 }, "curl", args(path, extra)).then(
              (r) => `${r.stdout}${r.stderr}`,
            );
          attack = (async () => {
            const answers = [
              await curl("/"),
              await curl("/callback?error=access_denied&state=guessed"),
              await curl(new URL(url).pathname),
              await ownCurl(new URL(url).pathname, "-H", `Host: rebound.example:${port}`),
              await ownCurl("/"),
            ];
            // Only now does the user's browser open the printed URL.
            victim = spawnDriver(url, { DRIVER_MODE: "login", DRIVER_RESULT: resultFile });
            return answers;
          })();
        }),
    });
    assert.ok(attack, `no sign-in URL in: ${res.stderr}`);
    const [root, forged, start, rebound, ownRoot] = (await attack) as [
      string,
      string,
      string,
      string,
      string,
    ];
    assert.equal(root, "\n403 ");
    assert.equal(forged, "\n403 ");
    assert.equal(start, "\n403 ", "another uid gets nothing, even with the one-time path");
    assert.match(rebound, /\n421 $/, rebound);
    assert.match(ownRoot, /\n404 $/, ownRoot);
    for (const answer of [root, forged, start, rebound, ownRoot]) {
      assert.doesNotMatch(
        answer,
        /state=|code_challenge|nonce|\/realms\//,
        "nothing of the authorization request leaks",
      );
    }
    assert.ok(victim);
    const driver = await victim;
    assert.equal(driver.code, 0, driver.stderr);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stderr, /^Signed in as alice at /m);
    assert.match(res.stderr, /refused a request from another local user \(HTTP 403\); the sign-in goes on/);
    assert.doesNotMatch(res.stderr, new RegExp(`\\b${USER_A}\\b|uid ${other.uid}\\b`), "never which user");
    assert.match(res.stderr, /refused a request with a foreign Host header/);
    await netrcPassword(ws);
  });

  test("the sign-in URL is served once; any other path is a bare 404", async () => {
    const served: [number, boolean][] = [];
    const ws = await userWorkspace();
    const res = await run(ws, ["login", "--no-browser"], {
      onSpawn: (child) =>
        watchStderr(child, /open this URL in a browser: (http:\/\/127\.0\.0\.1:\d+\/\S+)\n/, (m) => {
          void (async () => {
            const url = m[1] as string;
            const first = await fetch(url, { redirect: "manual" });
            const second = await fetch(url, { redirect: "manual" });
            // A path one character off (never the real one: the replacement differs from the last).
            const guessed = await fetch(`${url.slice(0, -1)}${url.endsWith("A") ? "B" : "A"}`, {
              redirect: "manual",
            });
            served.push(
              [first.status, first.headers.get("location")?.startsWith(realm.issuer) ?? false],
              [second.status, second.headers.get("location") !== null],
              [guessed.status, guessed.headers.get("location") !== null],
            );
            child.kill("SIGINT");
          })();
        }),
    });
    assert.equal(res.code, 130, res.stderr);
    assert.deepEqual(served, [
      [302, true],
      [410, false],
      [404, false],
    ]);
  });

  test("signing in with another account than before says so, naming both", async () => {
    const ws = await userWorkspace();
    const first = await run(ws, ["login"], { driver: "login" });
    assert.equal(first.code, 0, first.stderr);
    assert.doesNotMatch(first.stderr, /different account/);
    const again = await run(ws, ["login"], {
      driver: "login",
      env: { DRIVER_USER: "bob", DRIVER_PASSWORD: "bob-password" },
    });
    assert.equal(again.code, 0, again.stderr);
    assert.match(
      again.stderr,
      /^warning: signed in as bob, a different account than before \(alice\); the netrc now holds the token of bob$/m,
    );
    assert.equal((await stateFile(ws)).username, "bob");
  });

  test("an unknown client_id or an unregistered redirect URI is named before any browser opens", async () => {
    // The browser command only leaves a mark: it must never run.
    const ws = await userWorkspace({ client_id: "nix-cache-typo" });
    const mark = join(ws.dir, "browser-opened");
    const opener = join(ws.dir, "opener.sh");
    await writeFile(opener, `#!/bin/sh\ntouch '${mark}'\n`, { mode: 0o755 });
    const unknown = await run(ws, ["login", "--browser-command", opener, "--timeout", "10m"]);
    assert.equal(unknown.code, 2, unknown.stderr);
    assert.match(
      unknown.stderr,
      /^error: 127\.0\.0\.1:\d+ does not know the client "nix-cache-typo" \(client_id in .*config\.toml\): its authorization endpoint answers HTTP 400\nhint: check client_id in /m,
    );
    assert.doesNotMatch(unknown.stderr, /timed out|Opening a browser/);
    assert.ok(!existsSync(mark), "no browser was opened");
    await assertNothingWritten(ws);

    // A realm whose client is registered for another redirect URI than the loopback /callback.
    const elsewhere = await startRealm({ tls: false, publicRedirectUris: ["http://127.0.0.1/elsewhere"] });
    try {
      const ws2 = await userWorkspace({ issuer: elsewhere.issuer });
      const res = await run(ws2, ["login", "--browser-command", opener, "--port", String(await freePort())]);
      assert.equal(res.code, 1, res.stderr);
      assert.match(
        res.stderr,
        /^error: 127\.0\.0\.1:\d+ does not accept the redirect URI http:\/\/127\.0\.0\.1:(\d+)\/callback for client_id "nix-cache": its authorization endpoint answers HTTP 400\nhint: ask the provider's administrator to register http:\/\/127\.0\.0\.1:\1\/callback as a redirect URI of the client/m,
      );
      assert.ok(!existsSync(mark), "no browser was opened");
      await assertNothingWritten(ws2);
      // The check signed no one in: the realm issued nothing.
      assert.equal(elsewhere.countRequests("/token"), 0);
    } finally {
      await elsewhere.stop();
    }
  });

  test("usage errors exit 2 before anything starts", async () => {
    const ws = await userWorkspace();
    for (const args of [
      ["login", "--device", "--port", "8000"],
      ["login", "--port", "http"],
      ["login", "--timeout", "soon"],
      ["login", "--browser-command", "'unbalanced"],
    ]) {
      const res = await run(ws, args);
      assert.equal(res.code, 2, `${args.join(" ")}: ${res.stderr}`);
    }
    await assertNothingWritten(ws);
  });
});
