/**
 * The threat model (docs/security.md, "Threat model") end to end: the built CLI against a hostile provider of
 * our own (test/support/hostile-provider.ts) and, where the attacker is another local user, files
 * and processes of the users ncl-test-a/ncl-test-b (test/support/users.ts; these tests need root,
 * as CI has, and fail saying so otherwise). Each test reproduces an attack from issue 12.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmod, chown, mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { StateStore } from "../../src/store/state.ts";
import { CLI, makeWorkspace, runCli, snapshot, type Workspace } from "../support/cli.ts";
import { hostileWorkspace } from "../support/realm-workspaces.ts";
import {
  startHostileProvider,
  startRecorder,
  type HostileProvider,
  type Recorder,
} from "../support/hostile-provider.ts";
import { ensureUser, USER_A, type TestUser } from "../support/users.ts";

const HOST = "cache.example.test";
const KEEP = "machine other.example login someone password keep-me\n";

let op: HostileProvider;
let recorder: Recorder;
const workspaces: Workspace[] = [];

before(async () => {
  op = await startHostileProvider();
  recorder = await startRecorder();
});
after(async () => {
  await op.stop();
  await recorder.stop();
  await Promise.all(workspaces.map((ws) => ws.cleanup()));
});

/** A service account at the hostile provider; its netrc already holds someone else's entry. */
async function serviceWorkspace(extra: Record<string, unknown> = {}): Promise<Workspace> {
  const ws = await hostileWorkspace(op.issuer, "service", { cache_host: HOST, ...extra });
  workspaces.push(ws);
  await mkdir(dirname(ws.netrcPath), { recursive: true, mode: 0o700 });
  await writeFile(ws.netrcPath, KEEP, { mode: 0o600 });
  return ws;
}

async function userWorkspace(): Promise<Workspace> {
  const ws = await makeWorkspace();
  workspaces.push(ws);
  await ws.writeConfig({ issuer: op.issuer, client_id: "nix-cache", cache_host: HOST });
  return ws;
}

const tokenAnswer = (fields: Record<string, unknown>) => () => ({
  body: { token_type: "Bearer", ...fields },
});

function resetProvider(): void {
  op.requests.length = 0;
  recorder.requests.length = 0;
  for (const k of Object.keys(op.metadata)) delete op.metadata[k];
  op.on("/token", tokenAnswer({ access_token: "hostile-access-token-1", expires_in: 300 }));
  op.on("/logout", () => ({ status: 204 }));
  op.on("/certs", () => ({ body: { keys: [] } }));
  op.on("/auth", () => ({ headers: { "content-type": "text/html" }, body: "<title>Sign in</title>" }));
}

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/;

describe("a hostile provider cannot corrupt the netrc or the terminal", { concurrency: false }, () => {
  before(resetProvider);

  test("token bytes: a token with U+010A (a newline once written as latin1) or NUL is refused, nothing written", async () => {
    for (const token of ["tok\u010amachine other.example login x password injected", "tok\u0000en"]) {
      const ws = await serviceWorkspace();
      op.on("/token", tokenAnswer({ access_token: token, expires_in: 300 }));
      const before = await snapshot(ws.home);
      const r = await runCli(ws, ["service-account"]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(
        r.stderr,
        /^error: the access token from the provider for cache\.example\.test contains the character U\+(010A|0000), which is not allowed in a Bearer token \(RFC 6750 b64token\); nothing was written$/m,
      );
      assert.deepEqual(await snapshot(ws.home), before, "every file is as it was");
    }
    resetProvider();
  });

  test("device sign-in: a verification_uri that is not https is refused before anything is shown", async () => {
    const ws = await userWorkspace();
    op.on("/device", () => ({
      body: {
        device_code: "dc-1",
        user_code: "ABCD-EFGH",
        verification_uri: "http://phish.example/device",
        expires_in: 600,
      },
    }));
    const r = await runCli(ws, ["login", "--device"]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      /error: 127\.0\.0\.1:\d+ advertises a device verification URI at http:\/\/phish\.example, which is not https; nothing was sent there/,
    );
    assert.doesNotMatch(r.stderr, /ABCD-EFGH/);
    assert.equal(op.count("/token"), 0);
  });

  test("device sign-in: control characters in the user code and error_description never reach the terminal; interval 0.001 s is clamped to 5 s", async () => {
    const ws = await userWorkspace();
    op.requests.length = 0;
    op.on("/device", () => ({
      body: {
        device_code: "dc-2",
        user_code: "\u001b]0;pwned\u0007WXYZ\u001b[2J",
        verification_uri: `${op.issuer}/verify\u001b[31m`,
        expires_in: 600,
        interval: 0.001,
      },
    }));
    op.on("/token", () => ({ status: 400, body: { error: "authorization_pending" } }));
    // One poll before the code is shown, the next due after 5 s (the clamped interval): --timeout
    // 3s ends the wait before it.
    const r = await runCli(ws, ["login", "--device", "--timeout", "3s"]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /timed out after 3s waiting for the sign-in to be approved/);
    assert.equal(op.count("/token"), 1, "no second token request before the clamped interval");
    assert.doesNotMatch(r.stderr, CONTROL, JSON.stringify(r.stderr));
    assert.match(r.stderr, /and enter the code \]0;pwned WXYZ \[2J\n/);
    assert.match(r.stderr, /\/verify%1B\[31m\n/);

    // The provider's error text, with a terminal escape, on the first poll.
    op.on("/device", () => ({
      body: {
        device_code: "dc-3",
        user_code: "CODE",
        verification_uri: `${op.issuer}/verify`,
        expires_in: 600,
      },
    }));
    op.on("/token", () => ({
      status: 400,
      body: { error: "access_denied", error_description: "no\u001b[2J\r\nhint: run rm -rf ~" },
    }));
    const denied = await runCli(ws, ["login", "--device", "--timeout", "30s"]);
    assert.equal(denied.code, 1, denied.stderr);
    assert.doesNotMatch(denied.stderr, CONTROL, JSON.stringify(denied.stderr));
    assert.doesNotMatch(denied.stderr, /^hint: run rm/m, "the provider cannot forge a line of ours");
    assert.match(
      denied.stderr,
      /error: the sign-in was denied at 127\.0\.0\.1:\d+ \(no \[2J {2}hint: run rm -rf ~\)/,
    );
    resetProvider();
  });

  test("status: a session end recorded with control characters (by an older version, or by hand) is shown without them", async () => {
    const ws = await userWorkspace();
    const store = new StateStore(ws.stateDir, op.issuer, "nix-cache");
    await mkdir(ws.stateDir, { recursive: true, mode: 0o700 });
    await writeFile(
      store.file,
      JSON.stringify({
        ...store.empty("user"),
        refresh_token: "planted-refresh-token",
        session_ended: {
          at: "2026-01-01T00:00:00.000Z",
          description: "Session \u001b]0;pwned\u0007not active",
        },
      }),
      { mode: 0o600 },
    );
    const r = await runCli(ws, ["status"]);
    assert.equal(r.code, 3, r.stderr);
    assert.doesNotMatch(r.stdout, CONTROL, JSON.stringify(r.stdout));
    assert.match(
      r.stdout,
      /the provider ended the session at 2026-01-01T00:00:00Z \(Session {2}\]0;pwned not active\)/,
    );
  });

  test("huge expires_in or exp do not crash (RangeError: Invalid time value before)", async () => {
    const ws = await serviceWorkspace();
    op.on("/token", tokenAnswer({ access_token: "opaque-1", expires_in: 1e300 }));
    const huge = await runCli(ws, ["service-account"]);
    assert.equal(huge.code, 0, huge.stderr);
    assert.match(huge.stderr, /9999-12-31T23:59:59Z/);

    const exp = Buffer.from(JSON.stringify({ exp: 1e300 })).toString("base64url");
    op.on("/token", tokenAnswer({ access_token: `eyJhbGciOiJub25lIn0.${exp}.c2ln` }));
    const jwt = await runCli(ws, ["service-account"]);
    assert.equal(jwt.code, 0, jwt.stderr);
    resetProvider();
  });

  test("an opaque token without expires_in is taken as fresh for default_token_lifetime, and status says so", async () => {
    const opaque = await serviceWorkspace({ default_token_lifetime: "10m" });
    op.on("/token", tokenAnswer({ access_token: "opaque-no-lifetime" }));
    op.requests.length = 0;
    const first = await runCli(opaque, ["service-account"]);
    assert.equal(first.code, 0, first.stderr);
    // A timer's next run: the token counts as fresh, so no new one is fetched.
    const timer = await runCli(opaque, ["service-account", "--min-valid", "1m"]);
    assert.equal(timer.code, 0, timer.stderr);
    assert.equal(op.count("/token"), 1, "one token request for two runs");
    const status = await runCli(opaque, ["status"]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(
      status.stdout,
      /access token: +valid, expires in (9|10)m \(.*\) \(assumed: the provider gave no lifetime, so default_token_lifetime applies\)/,
    );
    const json = JSON.parse((await runCli(opaque, ["status", "--json"])).stdout) as {
      access_token: { expiry_assumed: boolean };
    };
    assert.equal(json.access_token.expiry_assumed, true);
    resetProvider();
  });

  test("--verbose prints no part of a token, not even the excerpt a JSON parse error quotes", async () => {
    const ws = await serviceWorkspace();
    const secret = "SECRETTOKENabcdefghijklmnopqrstuvwxyz0123456789";
    op.on("/token", () => ({ body: `{"token_type":"Bearer","access_token": ${secret}, "expires_in": 300}` }));
    const r = await runCli(ws, ["service-account", "--verbose"]);
    assert.equal(r.code, 1, r.stderr);
    // The answer is named, never quoted (a parser's message would quote the token).
    assert.match(r.stderr, /answered the client credentials grant with a body that is not JSON/);
    for (let i = 0; i + 6 <= secret.length; i++) {
      const piece = secret.slice(i, i + 6);
      assert.ok(!r.stderr.includes(piece), `stderr shows "${piece}" of the token:\n${r.stderr}`);
    }
    resetProvider();
  });

  test("logout: a 307 from the end-session endpoint is not followed (the refresh token stays here)", async () => {
    const ws = await userWorkspace();
    op.on("/logout", () => ({ status: 307, headers: { location: `${recorder.url}/steal` } }));
    const store = new StateStore(ws.stateDir, op.issuer, "nix-cache");
    await mkdir(ws.stateDir, { recursive: true, mode: 0o700 });
    await writeFile(
      store.file,
      JSON.stringify({ ...store.empty("user"), refresh_token: "refresh-token-to-steal-1" }),
      { mode: 0o600 },
    );
    ws.secrets.add("refresh-token-to-steal-1");
    const r = await runCli(ws, ["logout"]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /answered the logout request with a redirect \(HTTP 307\), which is not followed/);
    assert.equal(recorder.requests.length, 0, "nothing reached the redirect target");
    assert.deepEqual(await readdir(ws.stateDir).then((f) => f.filter((n) => n.endsWith(".json"))), []);

    // An end-session endpoint over plain http on another host is never used.
    const ws2 = await userWorkspace();
    op.metadata.end_session_endpoint = "http://logout.example/logout";
    const store2 = new StateStore(ws2.stateDir, op.issuer, "nix-cache");
    await mkdir(ws2.stateDir, { recursive: true, mode: 0o700 });
    await writeFile(
      store2.file,
      JSON.stringify({ ...store2.empty("user"), refresh_token: "rt-2-xxxxxxxx" }),
      {
        mode: 0o600,
      },
    );
    const r2 = await runCli(ws2, ["logout"]);
    assert.equal(r2.code, 1, r2.stderr);
    assert.match(
      r2.stderr,
      /advertises a logout endpoint \(end_session_endpoint\) at http:\/\/logout\.example, which is not https; nothing was sent there/,
    );
    resetProvider();
  });

  test("the signing-key prefetch follows no redirect and needs https", async () => {
    const ws = await userWorkspace();
    op.on("/certs", () => ({ status: 302, headers: { location: `${recorder.url}/certs` } }));
    const redirected = await runCli(ws, ["login", "--no-browser", "--timeout", "1s", "--verbose"]);
    assert.equal(redirected.code, 1, redirected.stderr);
    assert.match(redirected.stderr, /verbose: GET http:\/\/127\.0\.0\.1:\d+\/realms\/hostile\/certs -> 302/);
    assert.equal(recorder.requests.length, 0, "the redirect was not followed");

    // Refused with the discovery document, before the sign-in starts (see "plain http only to loopback").
    op.metadata.jwks_uri = "http://keys.example/certs";
    const plain = await runCli(ws, ["login", "--no-browser", "--timeout", "1s", "--verbose"]);
    assert.equal(plain.code, 1, plain.stderr);
    assert.match(
      plain.stderr,
      /^error: 127\.0\.0\.1:\d+ advertises a signing key set \(jwks_uri\) at http:\/\/keys\.example, which is not https/m,
    );
    assert.doesNotMatch(plain.stderr, /open this URL/);
    resetProvider();
  });

  test("login --verbose: a key set that is no JSON, full of escape sequences, is not echoed raw", async () => {
    const ws = await userWorkspace();
    op.on("/certs", () => ({
      body: "\u001b]0;PWNED-TITLE\u0007\u001b[2J\u001b[31mSigned in as admin\u001b[0m",
    }));
    const r = await runCli(ws, ["login", "--no-browser", "--timeout", "1s", "--verbose"]);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(op.count("/certs"), 1, "the prefetch read the key set");
    assert.match(r.stderr, /verbose: could not fetch the signing keys ahead: SyntaxError: /);
    assert.doesNotMatch(r.stderr, CONTROL);
    resetProvider();
  });

  test("loopback traffic never goes through HTTP(S)_PROXY (the client secret would cross it in clear)", async () => {
    const ws = await serviceWorkspace();
    const proxy = `http://127.0.0.1:${recorder.port}`;
    const r = await runCli(ws, ["service-account"], {
      env: { HTTP_PROXY: proxy, HTTPS_PROXY: proxy, http_proxy: proxy, https_proxy: proxy },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(recorder.requests.length, 0, "the proxy saw no request");
    assert.ok(op.count("/token") >= 1);
    resetProvider();
  });

  test("a lock held by another run is not waited for silently: the wait is announced", async () => {
    const ws = await serviceWorkspace();
    const store = new StateStore(ws.stateDir, op.issuer, "nix-cache-server");
    await mkdir(`${store.file}.lock`, { recursive: true, mode: 0o700 });
    const child = spawn(process.execPath, [CLI, "service-account"], {
      env: ws.env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    const noticed = new Promise<void>((resolve) =>
      child.stderr.setEncoding("utf8").on("data", (d: string) => {
        stderr += d;
        if (/note: waiting for \S+\.lock: held by an older nix-cache-login/.test(stderr)) resolve();
      }),
    );
    const closed = new Promise<number | null>((resolve) => child.on("close", resolve));
    await Promise.race([noticed, closed]);
    // A lock directory is what versions before the holder-naming lock file left.
    assert.match(stderr, /note: waiting for .*\.json\.lock: held by an older nix-cache-login$/m);
    // The other run finishes: the waiting one goes on.
    await rm(`${store.file}.lock`, { recursive: true });
    assert.equal(await closed, 0, stderr);
  });

  test("the client check before the browser: the provider's words never reach the terminal raw, its page is not echoed, the probe's state and PKCE are its own", async () => {
    const ws = await userWorkspace();
    let probe: URL | undefined;
    op.on("/auth", (req) => {
      probe = new URL(req.path, op.issuer);
      const back = new URL(probe.searchParams.get("redirect_uri") ?? "");
      back.searchParams.set("error", "unauthorized_client\u001b[2J");
      back.searchParams.set(
        "error_description",
        "Client is not allowed\u001b]0;pwned\u0007 to initiate browser login",
      );
      back.searchParams.set("state", probe.searchParams.get("state") ?? "");
      return { status: 302, headers: { location: back.href } };
    });
    const before = await snapshot(ws.home);
    const r = await runCli(ws, ["login", "--no-browser"]);
    assert.equal(r.code, 1, r.stderr);
    assert.doesNotMatch(r.stderr, CONTROL, JSON.stringify(r.stderr));
    assert.match(
      r.stderr,
      /^error: 127\.0\.0\.1:\d+ refuses a browser sign-in for client_id "nix-cache": unauthorized_client/m,
    );
    assert.doesNotMatch(r.stderr, /open this URL/, "no sign-in URL is offered");
    assert.equal(probe?.searchParams.get("prompt"), "none");
    assert.equal(probe?.searchParams.get("code_challenge_method"), "S256");
    assert.match(probe?.searchParams.get("state") ?? "", /^[A-Za-z0-9_-]{22,}$/);
    assert.deepEqual(await snapshot(ws.home), before, "nothing written");

    // An error page full of escape sequences: named by its status only.
    op.on("/auth", () => ({
      status: 400,
      headers: { "content-type": "text/html" },
      body: `<h1>\u001b[31mSomething\u001b]0;pwned\u0007</h1>${"x".repeat(200_000)}`,
    }));
    const page = await runCli(ws, ["login", "--no-browser"]);
    assert.equal(page.code, 1, page.stderr);
    assert.match(
      page.stderr,
      /^error: 127\.0\.0\.1:\d+ refuses a sign-in for client_id "nix-cache" with the redirect URI http:\/\/127\.0\.0\.1:\d+\/callback: its authorization endpoint answers HTTP 400$/m,
    );
    assert.doesNotMatch(page.stderr, /Something|pwned|xxxx/);
    assert.deepEqual(await snapshot(ws.home), before, "nothing written");

    // An authorization endpoint off loopback over plain http: not asked, and no URL offered.
    op.metadata.authorization_endpoint = "http://phish.example/auth";
    const plain = await runCli(ws, ["login", "--no-browser"]);
    assert.equal(plain.code, 1, plain.stderr);
    assert.match(
      plain.stderr,
      /advertises a sign-in endpoint \(authorization_endpoint\) at http:\/\/phish\.example, which is not https; nothing was sent there/,
    );
    assert.doesNotMatch(plain.stderr, /open this URL/);
    resetProvider();
  });

  test("--timeout 25d (beyond setTimeout's range) waits instead of timing out at once", async () => {
    const ws = await userWorkspace();
    const child = spawn(process.execPath, [CLI, "login", "--no-browser", "--timeout", "25d"], {
      env: ws.env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    const waiting = new Promise<number>((resolve) => {
      child.stderr.setEncoding("utf8").on("data", (d: string) => {
        stderr += d;
        const m = /open this URL in a browser: http:\/\/127\.0\.0\.1:(\d+)\/[\s\S]*Waiting up to 25d/.exec(
          stderr,
        );
        if (m) resolve(Number(m[1]));
      });
    });
    const closed = new Promise<number | null>((resolve) => child.on("close", resolve));
    const port = await Promise.race([waiting, closed.then(() => -1)]);
    assert.ok(port > 0, `exited early: ${stderr}`);
    // Still serving: the wait did not end at once.
    const res = await fetch(`http://127.0.0.1:${port}/nothing`);
    assert.equal(res.status, 404);
    child.kill("SIGINT");
    assert.equal(await closed, 130, stderr);
    assert.doesNotMatch(stderr, /timed out/);
  });
});

describe("a netrc the token cannot go into is found before the grant", { concurrency: false }, () => {
  before(resetProvider);

  test("service-account: a broken or group-writable netrc fails with its code; no grant, no file changed", async () => {
    const ws = await serviceWorkspace();
    const grants = () => op.count("/token");
    // First run: no state yet, a netrc with a NUL byte (a syntax error).
    await writeFile(ws.netrcPath, `${KEEP}machine broken.example login x password a\u0000b\n`, {
      mode: 0o600,
    });
    let before = await snapshot(ws.home);
    let r = await runCli(ws, ["service-account", "--json"]);
    assert.equal(r.code, 1, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { error: { code: string } }).error.code, "netrc_syntax", r.stdout);
    assert.equal(grants(), 0, "no grant was made");
    assert.deepEqual(await snapshot(ws.home), before, "every file is as it was");

    // With a state from a run that worked: the state is not rewritten either.
    await writeFile(ws.netrcPath, KEEP, { mode: 0o600 });
    r = await runCli(ws, ["service-account"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(grants(), 1);
    await writeFile(
      ws.netrcPath,
      `${await readFile(ws.netrcPath, "utf8")}machine broken.example password "open\n`,
    );
    before = await snapshot(ws.home);
    r = await runCli(ws, ["service-account", "--json", "--min-valid", "1h"]);
    assert.equal(r.code, 1, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { error: { code: string } }).error.code, "netrc_syntax", r.stdout);
    assert.equal(grants(), 1, "no second grant");
    assert.deepEqual(await snapshot(ws.home), before, "the state and the netrc are as they were");

    // A netrc others may write is refused the same way, before the grant.
    await writeFile(ws.netrcPath, KEEP, { mode: 0o600 });
    await chmod(ws.netrcPath, 0o666);
    before = await snapshot(ws.home);
    r = await runCli(ws, ["service-account", "--json", "--min-valid", "1h"]);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(
      (JSON.parse(r.stdout) as { error: { code: string } }).error.code,
      "netrc_writable_by_others",
      r.stdout,
    );
    assert.equal(grants(), 1, "no second grant");
    assert.deepEqual(await snapshot(ws.home), before);
    resetProvider();
  });
});

describe(
  "plain http only to loopback: endpoints of a loopback issuer's discovery document",
  { concurrency: false },
  () => {
    // The CLI resolves *.corp.example to 127.0.0.1 (a --require hook, so nothing leaves the machine)
    // and would reach the hostile provider at these names: a request that was sent is recorded.
    let resolveCorp: Record<string, string>;
    before(async () => {
      const ws = await makeWorkspace();
      workspaces.push(ws);
      const hook = join(ws.dir, "resolve-corp.cjs");
      await writeFile(
        hook,
        `const dns = require("node:dns");
const lookup = dns.lookup;
dns.lookup = function (host, options, callback) {
  if (typeof options === "function") [callback, options] = [options, {}];
  if (typeof host !== "string" || !host.endsWith(".corp.example")) return lookup.call(this, host, options, callback);
  const all = typeof options === "object" && options !== null && options.all === true;
  process.nextTick(() => (all ? callback(null, [{ address: "127.0.0.1", family: 4 }]) : callback(null, "127.0.0.1", 4)));
};
`,
      );
      resolveCorp = { NODE_OPTIONS: `--require ${hook}` };
      resetProvider();
    });
    after(resetProvider);

    const corp = (name: string, path: string) =>
      `http://${name}.corp.example:${op.port}/realms/hostile${path}`;
    const corpRequests = () => op.requests.filter((q) => /\.corp\.example/.test(q.headers.host ?? ""));
    const errorCode = (stdout: string) =>
      (JSON.parse(stdout.trim().split("\n").at(-1) ?? "{}") as { error?: { code?: string } }).error?.code;

    async function signedInWorkspace(): Promise<Workspace> {
      const ws = await userWorkspace();
      await ws.writeConfig({
        issuer: op.issuer,
        client_id: "nix-cache",
        cache_host: HOST,
        token_storage: "file",
      });
      const store = new StateStore(ws.stateDir, op.issuer, "nix-cache");
      await mkdir(ws.stateDir, { recursive: true, mode: 0o700 });
      await writeFile(
        store.file,
        JSON.stringify({ ...store.empty("user"), refresh_token: "users-refresh-token" }),
        {
          mode: 0o600,
        },
      );
      ws.secrets.add("users-refresh-token");
      return ws;
    }

    test("service-account, refresh: an http token endpoint on another host gets neither secret nor refresh token", async () => {
      resetProvider();
      op.metadata.token_endpoint = corp("token", "/token");
      for (const [ws, args] of [
        [await serviceWorkspace(), ["service-account"]],
        [await signedInWorkspace(), ["refresh"]],
      ] as const) {
        const before = await snapshot(ws.home);
        const r = await runCli(ws, [...args, "--json"], { env: resolveCorp });
        assert.equal(r.code, 1, `${args[0]}: ${r.stderr}`);
        assert.equal(errorCode(r.stdout), "provider_endpoint_not_https", r.stdout);
        assert.match(
          r.stderr,
          /error: 127\.0\.0\.1:\d+ advertises a token endpoint \(token_endpoint\) at http:\/\/token\.corp\.example:\d+, which is not https; nothing was sent there/,
        );
        assert.deepEqual(await snapshot(ws.home), before, `${args[0]}: every file is as it was`);
      }
      assert.deepEqual(corpRequests(), [], "no request reached a non-loopback host");
      assert.equal(op.count("/token"), 0);
    });

    test("logout: an http revocation endpoint on another host gets no refresh token (the local tokens still go)", async () => {
      resetProvider();
      op.metadata.revocation_endpoint = corp("revoke", "/revoke");
      op.on("/revoke", () => ({ status: 200, body: "" }));
      const ws = await signedInWorkspace();
      const r = await runCli(ws, ["logout", "--json"], { env: resolveCorp });
      assert.equal(r.code, 1, r.stderr);
      assert.match(
        r.stderr,
        /warning: could not revoke the session: 127\.0\.0\.1:\d+ advertises a revocation endpoint \(revocation_endpoint\) at http:\/\/revoke\.corp\.example:\d+, which is not https; nothing was sent there/,
      );
      assert.equal((JSON.parse(r.stdout) as { revoked: boolean }).revoked, false);
      assert.deepEqual(corpRequests(), []);
      assert.equal(op.count("/revoke") + op.count("/logout"), 0);
    });

    test("every endpoint field we or openid-client may call is checked, before any request", async () => {
      const fields: [string, string][] = [
        ["authorization_endpoint", "/auth"],
        ["token_endpoint", "/token"],
        ["jwks_uri", "/certs"],
        ["revocation_endpoint", "/revoke"],
        ["end_session_endpoint", "/logout"],
        ["device_authorization_endpoint", "/device"],
        ["pushed_authorization_request_endpoint", "/par"],
      ];
      for (const [field, path] of fields) {
        resetProvider();
        op.metadata[field] = corp("idp", path);
        const ws = await serviceWorkspace();
        const r = await runCli(ws, ["service-account", "--json"], { env: resolveCorp });
        assert.equal(r.code, 1, `${field}: ${r.stderr}`);
        assert.equal(errorCode(r.stdout), "provider_endpoint_not_https", `${field}: ${r.stdout}`);
        assert.match(r.stderr, new RegExp(`\\(${field}\\) at http://idp\\.corp\\.example:`), field);
        assert.equal(op.count("/token"), 0, field);
        assert.deepEqual(corpRequests(), [], field);
      }
    });

    test("a cached discovery document naming such an endpoint is not used: discovered again, and checked again", async () => {
      resetProvider();
      const ws = await signedInWorkspace();
      const store = new StateStore(ws.stateDir, op.issuer, "nix-cache");
      const cached = {
        fetched_at: new Date().toISOString(),
        metadata: { ...op.discovery(), token_endpoint: corp("token", "/token") },
      };
      await writeFile(
        store.file,
        JSON.stringify({ ...store.empty("user"), refresh_token: "users-refresh-token", discovery: cached }),
        { mode: 0o600 },
      );
      op.on(
        "/token",
        tokenAnswer({ access_token: "acc-1", expires_in: 300, refresh_token: "users-refresh-token-2" }),
      );
      const r = await runCli(ws, ["refresh", "--verbose"], { env: resolveCorp });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /verbose: discovering http:\/\/127\.0\.0\.1:\d+\/realms\/hostile/);
      assert.deepEqual(corpRequests(), []);
      assert.equal(op.count("/token"), 1, "refreshed at the token endpoint of the new document");

      // The document served now names it too: refused, nothing sent.
      op.requests.length = 0;
      await writeFile(
        store.file,
        JSON.stringify({ ...store.empty("user"), refresh_token: "users-refresh-token-2", discovery: cached }),
        { mode: 0o600 },
      );
      op.metadata.token_endpoint = corp("token", "/token");
      const refused = await runCli(ws, ["refresh", "--json"], { env: resolveCorp });
      assert.equal(refused.code, 1, refused.stderr);
      assert.equal(errorCode(refused.stdout), "provider_endpoint_not_https");
      assert.deepEqual(corpRequests(), []);
      assert.equal(op.count("/token"), 0);
    });
  },
);

describe("files another user could have written are not trusted (needs root)", { concurrency: false }, () => {
  let a: TestUser;
  before(async () => {
    a = await ensureUser(USER_A);
    resetProvider();
  });

  /** A state whose cached discovery names the attacker's token endpoint. */
  async function plantState(ws: Workspace): Promise<string> {
    const store = new StateStore(ws.stateDir, op.issuer, "nix-cache-server");
    await mkdir(ws.stateDir, { recursive: true, mode: 0o700 });
    const metadata = { issuer: op.issuer, token_endpoint: `${recorder.url}/token` };
    await writeFile(
      store.file,
      JSON.stringify({
        ...store.empty("service-account"),
        discovery: { fetched_at: new Date().toISOString(), metadata },
      }),
      { mode: 0o600 },
    );
    return store.file;
  }

  test("a token state owned by another user is refused: the client secret never goes to the endpoint it names", async () => {
    const ws = await serviceWorkspace();
    const file = await plantState(ws);
    await chown(file, a.uid, a.gid);
    const r = await runCli(ws, ["service-account"]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(
        `error: .*\\.json: token state owned by uid ${a.uid} \\(${USER_A}\\), not by root .*, so another user could have written it; nix-cache-login does not use it`,
      ),
    );
    assert.match(r.stderr, /hint: check who changed it, then `rm .*\.json` and sign in again if needed/);
    assert.equal(recorder.requests.length, 0, "no request to the planted endpoint");

    const doctor = await runCli(ws, ["doctor", "--json"]);
    const report = JSON.parse(doctor.stdout) as { checks: { id: string; status: string; summary: string }[] };
    const token = report.checks.find((c) => c.id === "token");
    assert.equal(token?.status, "problem");
    assert.match(token?.summary ?? "", /token state owned by uid/);
  });

  test("a token state directory writable by group or others is refused, saying what to do", async () => {
    const ws = await serviceWorkspace();
    await plantState(ws);
    await chmod(ws.stateDir, 0o777);
    const r = await runCli(ws, ["service-account"]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      /: token state directory writable by group and others \(mode 0777\), so another user could have written it/,
    );
    assert.match(r.stderr, /hint: check its files, then `chmod 700 /);
    assert.equal(recorder.requests.length, 0);
    const status = await runCli(ws, ["status"]);
    assert.equal(status.code, 1, status.stderr);
    await chmod(ws.stateDir, 0o700);
    // Fixed as the hint says, the state is read again: no token yet (exit 3), not an error.
    const fixed = await runCli(ws, ["status"]);
    assert.equal(fixed.code, 3, fixed.stderr);
  });
});
