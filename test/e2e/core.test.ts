/**
 * The core commands end to end: the built CLI as a subprocess, against a real oidc-provider realm
 * shaped like Keycloak on 127.0.0.1. No mocked HTTP.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmod, mkdir, readFile, stat, writeFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { StateStore } from "../../src/store/state.ts";
import { realmServiceWorkspace, realmUserWorkspace, seedSession } from "../support/realm-workspaces.ts";
import { writeState } from "../../src/store/write.ts";
import { CLI, makeWorkspace, netrcPassword, runCli, snapshot, type Workspace } from "../support/cli.ts";
import { startRealm, type Realm } from "../support/realm.ts";

const HOST = "127.0.0.1";
const UNRELATED = [
  "# my other credentials",
  "machine github.com login octocat password gh-secret-1",
  "",
  "machine example.org",
  "  login someone",
  "  password p2",
  "",
  "default login anonymous password guest",
  "",
].join("\n");

/** UNRELATED with our entry where it belongs: before `default`, since curl takes the first match. */
function withOurEntry(token: string): string {
  return UNRELATED.replace(
    "default login",
    `machine ${HOST}\nlogin nix-cache-login\npassword ${token}\ndefault login`,
  );
}

let realm: Realm;
const workspaces: Workspace[] = [];

async function userWorkspace(extra: Record<string, unknown> = {}): Promise<Workspace> {
  const ws = await realmUserWorkspace(realm, HOST, extra);
  workspaces.push(ws);
  return ws;
}

async function serviceWorkspace(secret = realm.serviceClientSecret): Promise<Workspace> {
  const ws = await realmServiceWorkspace(realm, HOST, { secret });
  workspaces.push(ws);
  return ws;
}

const signIn = (ws: Workspace): Promise<string> => seedSession(ws, realm);

async function tokenRequest(
  body: Record<string, string>,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${realm.issuer}/protocol/openid-connect/token`, {
    method: "POST",
    body: new URLSearchParams(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

function mode(st: { mode: number }): number {
  return st.mode & 0o777;
}

before(async () => {
  realm = await startRealm({ accessTokenTTL: 300, refreshTokenTTL: 3600 });
});

after(async () => {
  await realm.stop();
  for (const ws of workspaces) await ws.cleanup();
});

describe("service-account", () => {
  test("a discovery document cached while the clock was ahead is fetched again, not trusted until that time", async () => {
    const ws = await serviceWorkspace();
    assert.equal((await runCli(ws, ["service-account"])).code, 0);
    const store = new StateStore(ws.stateDir, realm.issuer, realm.serviceClientId);
    const state = store.read();
    assert.ok(state?.discovery !== undefined);
    const yearAhead = new Date(Date.now() + 365 * 24 * 3600 * 1000).toISOString();
    // Untouched but for the document's time: a fresh updated_at would look like a renewal made as
    // the next run started (that comparison has /proc/uptime's 10 ms grain), which it would reuse.
    const renewedAt = new Date(Date.now() - 60_000).toISOString();
    await writeState(
      store,
      { ...state, updated_at: renewedAt, discovery: { ...state.discovery, fetched_at: yearAhead } },
      { touch: false },
    );
    realm.clearRequests();
    const r = await runCli(ws, ["service-account"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(realm.countRequests("/.well-known/openid-configuration"), 1);
    assert.ok((store.read()?.discovery?.fetched_at ?? "") < yearAhead, "the document's time is this run's");
  });

  test("writes a one-line netrc entry, 0600 in a 0700 dir, and status reports it", async () => {
    const ws = await serviceWorkspace();
    const r = await runCli(ws, ["service-account"]);
    assert.equal(r.code, 0, r.stderr);
    const netrc = await readFile(ws.netrcPath, "utf8");
    const token = netrcPassword(netrc, HOST);
    assert.ok(token !== undefined);
    // One keyword per line: the token's line holds nothing else (curl <= 8.10 reads 4095 bytes a line).
    assert.equal(netrc, `machine ${HOST}\nlogin nix-cache-login\npassword ${token}\n`);
    assert.equal(mode(await stat(ws.netrcPath)), 0o600);
    assert.equal(mode(await stat(dirname(ws.netrcPath))), 0o700);
    assert.equal(mode(await stat(ws.stateDir)), 0o700);
    const claims = JSON.parse(Buffer.from(token.split(".")[1] as string, "base64url").toString()) as Record<
      string,
      unknown
    >;
    assert.equal(claims.iss, realm.issuer);
    assert.equal(claims.aud, realm.audience);

    const s = await runCli(ws, ["status", "--json"]);
    assert.equal(s.code, 0, s.stderr);
    const j = JSON.parse(s.stdout) as Record<string, unknown> & { access_token: Record<string, unknown> };
    const exp = Number(claims.exp) * 1000;
    assert.equal(j.config_path, ws.configPath);
    assert.equal(j.issuer, realm.issuer);
    assert.equal(j.client_id, realm.serviceClientId);
    assert.equal(j.cache_host, HOST);
    assert.equal(j.netrc_path, ws.netrcPath);
    assert.equal(j.mode, "service-account");
    assert.equal(j.netrc_entry, true);
    assert.equal(j.access_token.present, true);
    assert.equal(j.access_token.valid, true);
    // expires_in (300 s) from when the answer came: between the token's iat + 300 and now + 300.
    const expiresAt = Date.parse(j.access_token.expires_at as string);
    assert.ok(
      expiresAt >= exp - 1000 && expiresAt <= Date.now() + 300_000,
      `expires_at ${j.access_token.expires_at}`,
    );
  });

  test("keeps unrelated netrc entries byte for byte and replaces only its own", async () => {
    const ws = await serviceWorkspace();
    await mkdir(dirname(ws.netrcPath), { recursive: true });
    await writeFile(ws.netrcPath, `${UNRELATED}machine ${HOST} login old password stale-token\n`, {
      mode: 0o640,
    });
    const r = await runCli(ws, ["service-account"]);
    assert.equal(r.code, 0, r.stderr);
    const netrc = await readFile(ws.netrcPath, "utf8");
    const token = netrcPassword(netrc, HOST) as string;
    // Ours goes before the `default` entry (curl takes the first match) and the stale one is gone.
    assert.equal(netrc, withOurEntry(token));
    assert.equal(mode(await stat(ws.netrcPath)), 0o600, "tightened, never loosened");
    assert.match(r.stderr, /mode tightened from 0640 to 0600/);
  });

  test("a wrong client secret exits 2 and changes no file", async () => {
    const ws = await serviceWorkspace("not-the-secret");
    const before = await snapshot(ws.dir);
    const r = await runCli(ws, ["service-account"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^error: 127\.0\.0\.1:\d+ rejected client nix-cache-server: invalid_client/m);
    assert.match(r.stderr, /hint: check client_id and the secret in .*client-secret/);
    assert.deepEqual(await snapshot(ws.dir), before);
  });

  test("a missing or unreadable secret file is named, and nothing is written", async () => {
    const ws = await serviceWorkspace();
    const secretFile = join(ws.dir, "client-secret");
    const { rm } = await import("node:fs/promises");
    await rm(secretFile);
    let before = await snapshot(ws.dir);
    let r = await runCli(ws, ["service-account"]);
    assert.equal(r.code, 2);
    assert.equal(r.stderr.split("\n")[0], `error: client_secret_file ${secretFile}: no such file`);
    assert.deepEqual(await snapshot(ws.dir), before);
    // A directory stands in for an unreadable file: tests run as root, who can read any file.
    await mkdir(secretFile);
    before = await snapshot(ws.dir);
    r = await runCli(ws, ["service-account"]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr.split("\n")[0], `error: client_secret_file ${secretFile}: EISDIR`);
    assert.deepEqual(await snapshot(ws.dir), before);
  });

  test("--min-valid makes no request while the token lasts", async () => {
    const ws = await serviceWorkspace();
    assert.equal((await runCli(ws, ["service-account"])).code, 0);
    realm.clearRequests();
    const r = await runCli(ws, ["service-account", "--min-valid", "4m"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(realm.requests.length, 0);
    const again = await runCli(ws, ["service-account", "--min-valid", "10m"]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(realm.countRequests("/token"), 1);
    assert.equal(realm.requests.length, 1, "the discovery document came from the cache");
  });
});

describe("refresh", () => {
  test("renews, rotates the refresh token, and writes the netrc", async () => {
    const ws = await userWorkspace();
    const first = await signIn(ws);
    const r = await runCli(ws, ["refresh"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /Renewed the token for 127\.0\.0\.1: valid, expires in [45]m/);
    const netrc = await readFile(ws.netrcPath, "utf8");
    assert.equal(netrc, `machine ${HOST}\nlogin nix-cache-login\npassword ${netrcPassword(netrc, HOST)}\n`);
    const state = JSON.parse(
      await readFile(new StateStore(ws.stateDir, realm.issuer, realm.publicClientId).file, "utf8"),
    ) as Record<string, string>;
    const second = state.refresh_token as string;
    assert.notEqual(second, first, "rotated");
    assert.equal(state.username, "alice");
    assert.equal(
      mode(await stat(new StateStore(ws.stateDir, realm.issuer, realm.publicClientId).file)),
      0o600,
    );

    // With a cached discovery document, a refresh is exactly one HTTP request.
    realm.clearRequests();
    const startedRefresh = Date.now();
    const again = await runCli(ws, ["refresh"]);
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(
      realm.requests.map((q) => `${q.method} ${q.path}`),
      ["POST /realms/test/protocol/openid-connect/token"],
    );

    const status = await runCli(ws, ["status", "--json"]);
    assert.equal(status.code, 0);
    const j = JSON.parse(status.stdout) as { refresh_token: Record<string, unknown>; mode: string };
    assert.equal(j.mode, "user");
    assert.equal(j.refresh_token.present, true);
    assert.equal(j.refresh_token.valid, true);
    // refresh_expires_in (3600 s) from when the refresh answered, which was before now.
    const refreshExpiresAt = Date.parse(j.refresh_token.expires_at as string);
    assert.ok(
      refreshExpiresAt <= Date.now() + 3600_000 && refreshExpiresAt > startedRefresh + 3600_000 - 1000,
    );

    // The first refresh token is dead: using it again is refused (and, as in Keycloak, ends the grant).
    const reuse = await tokenRequest({
      grant_type: "refresh_token",
      refresh_token: first,
      client_id: "nix-cache",
    });
    assert.equal(reuse.status, 400);
    assert.equal(reuse.json.error, "invalid_grant");
  });

  describe("the account of a refresh answer's ID token (OIDC Core 12.2)", () => {
    /** The realm's answers to refresh grants, their ID token made over by `edit`. */
    function editIdToken(edit: (idToken: string) => string): void {
      realm.fault = (req) =>
        req.method === "POST" && req.path.endsWith("/token")
          ? {
              kind: "replace",
              edit: (real) => {
                const j = JSON.parse(real.body) as { id_token?: string };
                assert.equal(typeof j.id_token, "string", "the realm sends an ID token with a refresh");
                j.id_token = edit(j.id_token as string);
                return {
                  status: real.status,
                  body: JSON.stringify(j),
                  headers: { "content-type": "application/json" },
                };
              },
            }
          : "pass";
    }
    const unsigned = (idToken: string, claims: Record<string, unknown>): string => {
      const [h = "", p = "", sig = ""] = idToken.split(".");
      const payload = { ...(JSON.parse(Buffer.from(p, "base64url").toString("utf8")) as object), ...claims };
      return [h, Buffer.from(JSON.stringify(payload)).toString("base64url"), sig].join(".");
    };
    const stateOf = async (ws: Workspace) =>
      JSON.parse(
        await readFile(new StateStore(ws.stateDir, realm.issuer, realm.publicClientId).file, "utf8"),
      ) as {
        refresh_token: string;
        username?: string;
        subject?: string;
      };

    for (const [name, edit] of [
      [
        "signed by the realm",
        (t: string) => realm.withClaims(t, { sub: "mallory-sub", preferred_username: "mallory" }),
      ],
      [
        "with a broken signature",
        (t: string) => unsigned(t, { sub: "unsigned-sub", preferred_username: "unsigned" }),
      ],
    ] as const) {
      test(`an ID token for another sub, ${name}, is refused: account and netrc unchanged, the rotated refresh token kept`, async () => {
        const ws = await userWorkspace();
        await signIn(ws);
        const first = await runCli(ws, ["refresh"]);
        assert.equal(first.code, 0, first.stderr);
        const before = await stateOf(ws);
        assert.equal(before.username, "alice");
        const netrc = await readFile(ws.netrcPath, "utf8");
        editIdToken(edit);
        try {
          const r = await runCli(ws, ["refresh", "--json"]);
          assert.equal(r.code, 1, r.stderr);
          assert.equal(
            (JSON.parse(r.stdout) as { error: { code: string } }).error.code,
            "refresh_subject_changed",
          );
          assert.match(
            r.stderr,
            /^error: 127\.0\.0\.1:\d+ answered the refresh with an ID token for another account \(sub "(mallory|unsigned)-sub", signed in as sub "[^"]+"\); only the new refresh token was saved, the netrc is unchanged$/m,
          );
          const after = await stateOf(ws);
          assert.deepEqual([after.username, after.subject], [before.username, before.subject]);
          assert.notEqual(after.refresh_token, before.refresh_token, "the rotated refresh token is saved");
          assert.equal(await readFile(ws.netrcPath, "utf8"), netrc);
        } finally {
          realm.fault = undefined;
        }
        // The session lives on with the saved token.
        const again = await runCli(ws, ["refresh"]);
        assert.equal(again.code, 0, again.stderr);
        assert.equal((await stateOf(ws)).username, "alice");
      });
    }

    test("the same sub with another name and a broken signature: renewed, the stored name stays", async () => {
      const ws = await userWorkspace();
      await signIn(ws);
      const before = await stateOf(ws);
      editIdToken((t) => unsigned(t, { preferred_username: "admin" }));
      try {
        const r = await runCli(ws, ["refresh"]);
        assert.equal(r.code, 0, r.stderr);
      } finally {
        realm.fault = undefined;
      }
      const after = await stateOf(ws);
      assert.deepEqual([after.username, after.subject], ["alice", before.subject]);
      const status = await runCli(ws, ["status"]);
      assert.doesNotMatch(status.stdout + status.stderr, /admin/);
    });
  });

  test("Keycloak offline tokens (refresh_expires_in 0, no exp): shown as offline, not expired", async () => {
    const offline = await startRealm({ tls: false, offlineTokens: true });
    try {
      const ws = await makeWorkspace({ issuer: offline.issuer, client_id: "nix-cache", cache_host: HOST });
      workspaces.push(ws);
      const tokens = await offline.signIn();
      ws.secrets.add(tokens.refresh_token);
      const store = new StateStore(ws.stateDir, offline.issuer, "nix-cache");
      await writeState(store, { ...store.empty("user"), refresh_token: tokens.refresh_token });
      const r = await runCli(ws, ["refresh"]);
      assert.equal(r.code, 0, r.stderr);
      const status = await runCli(ws, ["status", "--json"]);
      assert.equal(status.code, 0, status.stderr);
      const j = JSON.parse(status.stdout) as { refresh_token: Record<string, unknown> };
      assert.deepEqual(
        [j.refresh_token.present, j.refresh_token.valid, j.refresh_token.expires_at, j.refresh_token.offline],
        [true, true, null, true],
      );
      const text = await runCli(ws, ["status"]);
      assert.match(
        text.stdout,
        /^refresh token: +offline \(no expiry; ends when revoked or idle past the realm's offline idle time\), in the state file(: .*)?$/m,
      );
      assert.equal((await runCli(ws, ["refresh"])).code, 0, "and it still refreshes");
    } finally {
      await offline.stop();
    }
  });

  test("--min-valid exits 0 without any request while the token is fresh", async () => {
    const ws = await userWorkspace();
    await signIn(ws);
    assert.equal((await runCli(ws, ["refresh"])).code, 0);
    const netrcBefore = await readFile(ws.netrcPath, "utf8");
    realm.clearRequests();
    const r = await runCli(ws, ["refresh", "--min-valid", "2m"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(realm.requests.length, 0);
    assert.equal(await readFile(ws.netrcPath, "utf8"), netrcBefore);
    const r2 = await runCli(ws, ["refresh", "--min-valid", "1h"]);
    assert.equal(r2.code, 0, r2.stderr);
    assert.equal(realm.countRequests("/token"), 1);
    assert.notEqual(await readFile(ws.netrcPath, "utf8"), netrcBefore);
  });

  test("10 parallel refreshes: all succeed, one request, one entry, neighbours intact", async () => {
    const ws = await userWorkspace();
    await signIn(ws);
    await mkdir(dirname(ws.netrcPath), { recursive: true });
    await writeFile(ws.netrcPath, UNRELATED, { mode: 0o600 });
    realm.clearRequests();
    const results = await Promise.all(Array.from({ length: 10 }, () => runCli(ws, ["refresh"])));
    for (const r of results) assert.equal(r.code, 0, r.stderr);
    assert.equal(realm.countRequests("/token"), 1, "the provider saw exactly one refresh");
    const netrc = await readFile(ws.netrcPath, "utf8");
    assert.equal(netrc.match(/^machine 127\.0\.0\.1$/gm)?.length, 1);
    const token = netrcPassword(netrc, HOST) as string;
    assert.equal(netrc, withOurEntry(token));
    const status = await runCli(ws, ["status", "--json"]);
    assert.equal(status.code, 0, "the session survived (no refresh token was used twice)");
  });

  test("a revoked session exits 3 with the login hint; only the end of the session is recorded", async () => {
    const ws = await userWorkspace();
    await signIn(ws);
    assert.equal((await runCli(ws, ["refresh"])).code, 0);
    await realm.revokeAllSessions();
    const stateFile = new StateStore(ws.stateDir, realm.issuer, realm.publicClientId).file;
    const before = await snapshot(ws.dir);
    const stateBefore = JSON.parse(await readFile(stateFile, "utf8")) as Record<string, unknown>;
    const r = await runCli(ws, ["refresh"]);
    assert.equal(r.code, 3);
    assert.match(r.stderr, /^error: your session at 127\.0\.0\.1:\d+ expired or was revoked/m);
    assert.match(r.stderr, /^hint: run `nix-cache-login login`$/m);
    const after = await snapshot(ws.dir);
    before.delete(stateFile);
    after.delete(stateFile);
    assert.deepEqual(after, before);
    const { session_ended: ended, ...rest } = JSON.parse(await readFile(stateFile, "utf8")) as Record<
      string,
      unknown
    >;
    assert.deepEqual(rest, stateBefore);
    assert.ok(ended !== undefined);
    // Only a new sign-in helps now, even while the access token lasts.
    const status = await runCli(ws, ["status"]);
    assert.equal(status.code, 3, status.stdout + status.stderr);
    assert.match(status.stderr, /^hint: run `nix-cache-login login`$/m);
  });

  test("not signed in exits 3", async () => {
    const ws = await userWorkspace();
    const r = await runCli(ws, ["refresh"]);
    assert.equal(r.code, 3);
    assert.match(
      r.stderr,
      /^error: not signed in to http:\/\/127\.0\.0\.1:\d+\/realms\/test as client nix-cache$/m,
    );
    assert.match(r.stderr, /run `nix-cache-login login`/);
  });

  test("--if-signed-in (the modules' timers, run for every user): silent exit 3 with no sign-in at all, the usual error otherwise", async () => {
    const ws = await userWorkspace();
    const before = await snapshot(ws.dir);
    const quiet = await runCli(ws, ["refresh", "--min-valid", "4m", "--if-signed-in"]);
    assert.deepEqual([quiet.code, quiet.stdout, quiet.stderr], [3, "", ""]);
    assert.deepEqual(await snapshot(ws.dir), before, "nothing written for a user who never signed in");
    // --json still answers on stdout (and only there).
    const json = await runCli(ws, ["refresh", "--if-signed-in", "--json"]);
    assert.equal(json.code, 3);
    assert.equal(json.stderr, "");
    assert.deepEqual(
      (({ command, action, username }) => ({ command, action, username }))(
        JSON.parse(json.stdout) as Record<string, unknown>,
      ),
      { command: "refresh", action: "not_signed_in", username: null },
    );
    const verbose = await runCli(ws, ["refresh", "--if-signed-in", "--verbose"]);
    assert.equal(verbose.code, 3);
    assert.match(verbose.stderr, /no token state in .*: not signed in, nothing to renew/);

    // Signed in: renewed as without the option.
    await signIn(ws);
    const renewed = await runCli(ws, ["refresh", "--if-signed-in"]);
    assert.equal(renewed.code, 0, renewed.stderr);
    assert.ok(netrcPassword(await readFile(ws.netrcPath, "latin1"), HOST) !== undefined);

    // A session the provider ended is someone's to fix: it is said, as always.
    const store = new StateStore(ws.stateDir, realm.issuer, realm.publicClientId);
    const state = store.read();
    assert.ok(state !== undefined);
    await writeState(store, { ...state, session_ended: { at: new Date().toISOString(), description: null } });
    const said = await runCli(ws, ["refresh", "--if-signed-in"]);
    assert.equal(said.code, 3, said.stderr);
    assert.match(said.stderr, /^error: the session at .* ended at /m);
    // Ended by another run after this one started (its state written later than our start): that
    // is no renewal made meanwhile, whatever the access token still says.
    const later = new Date(Date.now() + 60_000).toISOString();
    await writeState(
      store,
      { ...state, session_ended: { at: later, description: null }, updated_at: later },
      {
        touch: false,
      },
    );
    const meanwhile = await runCli(ws, ["refresh"]);
    assert.equal(meanwhile.code, 3, meanwhile.stderr);
    assert.match(meanwhile.stderr, /^error: the session at .* ended at /m);
  });

  test("a provider that is down: exit 1 naming the host, files unchanged", async () => {
    const down = await startRealm({ tls: false });
    const issuer = down.issuer;
    const port = down.port;
    await down.stop();
    const ws = await makeWorkspace({ issuer, client_id: "nix-cache", cache_host: HOST });
    workspaces.push(ws);
    const store = new StateStore(ws.stateDir, issuer, "nix-cache");
    await mkdir(ws.stateDir, { recursive: true, mode: 0o700 });
    await writeState(store, { ...store.empty("user"), refresh_token: "a-refresh-token-value" });
    ws.secrets.add("a-refresh-token-value");
    const before = await snapshot(ws.dir);
    const r = await runCli(ws, ["refresh"]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr.split("\n")[0], `error: cannot reach 127.0.0.1:${port}: connection refused`);
    assert.deepEqual(await snapshot(ws.dir), before);
  });

  test("a provider that never answers times out after `timeout`, naming the host", async () => {
    const sockets = new Set<import("node:net").Socket>();
    const server = http.createServer(() => undefined);
    server.on("connection", (s) => sockets.add(s));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as AddressInfo).port;
    try {
      const ws = await makeWorkspace({
        issuer: `http://127.0.0.1:${port}/realms/test`,
        client_id: "nix-cache",
        cache_host: HOST,
        timeout: "1s",
      });
      workspaces.push(ws);
      const store = new StateStore(ws.stateDir, `http://127.0.0.1:${port}/realms/test`, "nix-cache");
      await writeState(store, { ...store.empty("user"), refresh_token: "another-refresh-token" });
      const r = await runCli(ws, ["refresh"]);
      assert.equal(r.code, 1);
      assert.equal(r.stderr.split("\n")[0], `error: cannot reach 127.0.0.1:${port}: timed out`);
    } finally {
      for (const s of sockets) s.destroy();
      server.close();
    }
  });

  test("HTTPS_PROXY is honoured (CONNECT tunnel) for a remote issuer, NO_PROXY bypasses it, loopback always bypasses it", async () => {
    const tunnels: string[] = [];
    // The proxy records where it was asked to go and refuses: no remote host is reachable here.
    const proxy = http.createServer((_req, res) => res.writeHead(405).end());
    proxy.on("connect", (req: http.IncomingMessage, client: import("node:net").Socket) => {
      tunnels.push(req.url as string);
      client.end("HTTP/1.1 502 Bad Gateway\r\n\r\n");
    });
    await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
    const proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    try {
      const remote = await makeWorkspace();
      workspaces.push(remote);
      await remote.writeConfig({
        issuer: "https://sso.example.invalid/realms/x",
        client_id: "c",
        cache_host: HOST,
      });
      const viaProxy = await runCli(remote, ["login", "--device"], {
        env: { HTTPS_PROXY: proxyUrl, NO_PROXY: "" },
      });
      assert.equal(viaProxy.code, 1, viaProxy.stderr);
      assert.deepEqual(tunnels, ["sso.example.invalid:443"], "the discovery request went to the proxy");
      // The proxy's refusal is said as such, not as a timeout.
      assert.deepEqual(viaProxy.stderr.split("\n").slice(0, 2), [
        "error: cannot reach sso.example.invalid: the proxy answered HTTP 502 instead of opening a tunnel",
        "hint: check HTTPS_PROXY and NO_PROXY: the proxy must allow CONNECT to the issuer's host",
      ]);
      // One that wants credentials says so.
      const authProxy = http.createServer((_req, res) => res.writeHead(405).end());
      authProxy.on("connect", (_req: http.IncomingMessage, client: import("node:net").Socket) => {
        client.end(
          'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="p"\r\n\r\n',
        );
      });
      await new Promise<void>((r) => authProxy.listen(0, "127.0.0.1", r));
      try {
        const wantsAuth = await runCli(remote, ["login", "--device"], {
          env: { HTTPS_PROXY: `http://127.0.0.1:${(authProxy.address() as AddressInfo).port}`, NO_PROXY: "" },
        });
        assert.equal(wantsAuth.code, 1, wantsAuth.stderr);
        assert.deepEqual(wantsAuth.stderr.split("\n").slice(0, 2), [
          "error: cannot reach sso.example.invalid: the proxy answered HTTP 407 instead of opening a tunnel",
          "hint: the proxy asks who you are: give its user and password in HTTPS_PROXY (http://USER:PASSWORD@HOST:PORT)",
        ]);
      } finally {
        authProxy.close();
      }
      const bypassed = await runCli(remote, ["login", "--device"], {
        env: { HTTPS_PROXY: proxyUrl, NO_PROXY: "sso.example.invalid" },
      });
      assert.equal(bypassed.code, 1, bypassed.stderr);
      assert.equal(tunnels.length, 1, "NO_PROXY bypassed the proxy");

      // A loopback issuer is plain http: through a proxy its secrets would leave the machine.
      const ws = await userWorkspace();
      await signIn(ws);
      const r = await runCli(ws, ["refresh"], {
        env: { HTTP_PROXY: proxyUrl, HTTPS_PROXY: proxyUrl, NO_PROXY: "" },
      });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(tunnels.length, 1, "loopback never goes through the proxy");
    } finally {
      proxy.close();
    }
  });
});

describe("logout", () => {
  test("a revocation endpoint gone from the cached discovery document (404): discovered again, revoked there", async () => {
    const ws = await userWorkspace();
    await signIn(ws);
    assert.equal((await runCli(ws, ["refresh"])).code, 0);
    const store = new StateStore(ws.stateDir, realm.issuer, realm.publicClientId);
    const state = store.read();
    assert.ok(state?.discovery !== undefined && typeof state.refresh_token === "string");
    // The provider moved the endpoint since the document was cached (less than a day ago).
    const gone = `${realm.issuer}/protocol/openid-connect/revoke-moved`;
    assert.equal((await fetch(gone, { method: "POST" })).status, 404, "the old address answers 404");
    await writeState(
      store,
      {
        ...state,
        discovery: {
          ...state.discovery,
          metadata: { ...state.discovery.metadata, revocation_endpoint: gone },
        },
      },
      { touch: false },
    );
    const r = await runCli(ws, ["logout", "--verbose"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /revocation failed with a cached discovery document; discovering again/);
    assert.match(r.stderr, /^Signed out of /m);
    const dead = await tokenRequest({
      grant_type: "refresh_token",
      refresh_token: state.refresh_token,
      client_id: "nix-cache",
    });
    assert.equal(dead.json.error, "invalid_grant", "revoked at the endpoint the provider names now");
  });

  test("revokes the session, removes only our entry and every token from disk", async () => {
    const ws = await userWorkspace();
    await signIn(ws);
    await mkdir(dirname(ws.netrcPath), { recursive: true });
    await writeFile(ws.netrcPath, UNRELATED, { mode: 0o600 });
    assert.equal((await runCli(ws, ["refresh"])).code, 0);
    const store = new StateStore(ws.stateDir, realm.issuer, realm.publicClientId);
    const rt = (JSON.parse(await readFile(store.file, "utf8")) as { refresh_token: string }).refresh_token;
    const r = await runCli(ws, ["logout"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /Signed out of .*; removed the 127\.0\.0\.1 entry from/);
    assert.equal(await readFile(ws.netrcPath, "utf8"), UNRELATED);
    await assert.rejects(stat(store.file));
    const dead = await tokenRequest({
      grant_type: "refresh_token",
      refresh_token: rt,
      client_id: "nix-cache",
    });
    assert.equal(dead.json.error, "invalid_grant");
    // No token left anywhere under HOME.
    for (const [path, content] of await snapshot(ws.home)) {
      for (const s of ws.secrets) {
        if (s === realm.serviceClientSecret) continue;
        assert.ok(
          !Buffer.from(content.split(" ").pop() ?? "", "base64")
            .toString("latin1")
            .includes(s),
          path,
        );
      }
    }
    const status = await runCli(ws, ["status"]);
    assert.equal(status.code, 3);
    assert.match(status.stdout, /access token: +none/);
  });

  test("with the provider down it still cleans up locally, warns and exits 1", async () => {
    const other = await startRealm({ tls: false });
    const ws = await makeWorkspace({ issuer: other.issuer, client_id: "nix-cache", cache_host: HOST });
    workspaces.push(ws);
    const tokens = await other.signIn();
    ws.secrets.add(tokens.refresh_token as string);
    const store = new StateStore(ws.stateDir, other.issuer, "nix-cache");
    await writeState(store, { ...store.empty("user"), refresh_token: tokens.refresh_token as string });
    assert.equal((await runCli(ws, ["refresh"])).code, 0);
    await other.stop();
    const r = await runCli(ws, ["logout"]);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /^warning: could not revoke the session: cannot reach 127\.0\.0\.1:\d+: connection refused/m,
    );
    assert.equal(await readFile(ws.netrcPath, "utf8"), "");
    await assert.rejects(stat(store.file));
  });
});

// The configuration errors that need no provider are tested in-process (test/unit/run.test.ts).
describe("configuration errors", () => {
  test("client_secret_file with ${CREDENTIALS_DIRECTORY}: status works without it, service-account names it", async () => {
    const ws = await makeWorkspace();
    workspaces.push(ws);
    await ws.writeConfig({
      issuer: realm.issuer,
      client_id: realm.serviceClientId,
      cache_host: HOST,
      client_secret_file: "${CREDENTIALS_DIRECTORY}/client-secret",
    });
    const s = await runCli(ws, ["status", "--json"]);
    assert.equal(s.code, 3, s.stderr);
    assert.equal((JSON.parse(s.stdout) as { mode: string }).mode, "service-account");
    const before = await snapshot(ws.dir);
    const r = await runCli(ws, ["service-account"]);
    assert.equal(r.code, 2);
    assert.equal(
      r.stderr.split("\n")[0],
      `error: ${ws.configPath}: client_secret_file: environment variable $CREDENTIALS_DIRECTORY is not set`,
    );
    assert.deepEqual(await snapshot(ws.dir), before);
    const credentials = join(ws.dir, "creds");
    await mkdir(credentials);
    await writeFile(join(credentials, "client-secret"), realm.serviceClientSecret, { mode: 0o600 });
    const ok = await runCli(ws, ["service-account"], { env: { CREDENTIALS_DIRECTORY: credentials } });
    assert.equal(ok.code, 0, ok.stderr);
  });

  test("a netrc we cannot parse is named, exit 1, left as it was", async () => {
    const ws = await serviceWorkspace();
    await mkdir(dirname(ws.netrcPath), { recursive: true });
    await writeFile(ws.netrcPath, 'machine a login x password "unterminated\n', { mode: 0o600 });
    await chmod(ws.netrcPath, 0o600);
    const before = await snapshot(ws.dir);
    const r = await runCli(ws, ["service-account"]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr.split("\n")[0], `error: ${ws.netrcPath}: line 1: unterminated quoted token`);
    // The state was written before the netrc, but the netrc itself is untouched.
    const after = await snapshot(ws.dir);
    assert.equal(after.get(ws.netrcPath), before.get(ws.netrcPath));
  });
});

test("the built CLI prints package.json's version (the build's define)", async () => {
  const ws = await makeWorkspace();
  workspaces.push(ws);
  const v = await runCli(ws, ["--version"]);
  const pkg = JSON.parse(await readFile(new URL("../../package.json", import.meta.url), "utf8")) as {
    version: string;
  };
  assert.equal(v.code, 0);
  assert.equal(v.stdout, `${pkg.version}\n`);
});

test("a reader that goes away (`--help | head -0`) ends the CLI quietly", async () => {
  const ws = await makeWorkspace();
  workspaces.push(ws);
  const child = spawn(process.execPath, [CLI, "--help"], { env: ws.env, stdio: ["ignore", "pipe", "pipe"] });
  child.stdout.destroy();
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
    child.on("close", (c, s) => resolve([c, s])),
  );
  assert.deepEqual([code, signal], [0, null]);
  assert.equal(stderr, "");
});
