/**
 * Conformance against the real Keycloak (the pinned distribution from Maven Central, see
 * test/support/keycloak.ts): the built CLI signs in (Chromium for the browser and the device code),
 * refreshes, runs as a service account, logs out, notices an administrator's logout, and its tokens
 * get Nix through Apache + mod_auth_openidc. The realm is set up by replaying docs/provider-setup.md's steps.
 * Missing Java, Maven, Chromium, Apache or Nix fails these tests with the install command.
 *
 * Run alone: `npm run build && node --import tsx --test test/e2e/keycloak.test.ts`
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { StateStore } from "../../src/store/state.ts";
import { writeState } from "../../src/store/write.ts";
import { startProtectedCache, type ProtectedCache } from "../support/cache.ts";
import { requireChromium } from "../support/chromium.ts";
import { BROWSER_COMMAND, readDriverResult, spawnDriver, watchStderr } from "../support/driver.ts";
import { makeWorkspace, ROOT, runCli, type RunResult, type Workspace } from "../support/cli.ts";
import {
  KEYCLOAK_DIST,
  KeycloakAdmin,
  prepareKeycloak,
  requireJava,
  startKeycloak,
  type Keycloak,
} from "../support/keycloak.ts";
import {
  AUDIENCE,
  JWT_CLIENT,
  JWT_EC_CLIENT,
  jwtClaims,
  LIGHT_CLIENT,
  PUBLIC_CLIENT,
  refreshDirectly,
  CLIENT_SETTINGS,
  registerAsReadmeSays,
  registerClientSettings,
  REALM,
  SERVICE_CLIENT,
  signInOverHttp,
  type Registered,
  type TestUser,
} from "../support/keycloak-realm.ts";
import {
  isValidPath,
  makeBinaryCache,
  makeNixEnv,
  nixStoreDelete,
  nixStoreRealise,
  readStoreFile,
  requireNix,
  type NixEnv,
} from "../support/nix.ts";
import { curl } from "../support/protected-bed.ts";
import { clockSkewCases, printClockRows, type ClockBed } from "../support/clock-cases.ts";

const execFileP = promisify(execFile);
const HOST = "127.0.0.1";
const FILES = { "hello.txt": "hello through the Keycloak-protected cache\n" };

/**
 * bob's roles and groups: with Keycloak 26.7.3 his full access token is about 4070 bytes, so the
 * one-line netrc entry (`machine 127.0.0.1 login nix-cache-login password TOKEN`, 48 + 4070 bytes)
 * is longer than the 4094 bytes (plus newline) curl < 8.11 reads of a line. Another Keycloak
 * version may need other counts: the large-token test says so.
 */
const ROLE_COUNT = 63;
const GROUP_COUNT = 20;
/** curl 7.88 reads a netrc line into a 4096-byte buffer: 4094 bytes, the newline, the NUL. */
const CURL_788_LINE = 4094;
const ONE_LINE_PREFIX = `machine ${HOST} login nix-cache-login password `.length;

let kc: Keycloak;
let reg: Registered;
/** A disabled user (Users -> carol -> Enabled off). */
let carol: TestUser;
let dir: string;
let nix: NixEnv;
let storePaths: string[];
let cache: ProtectedCache;
const workspaces: Workspace[] = [];

before(async () => {
  requireChromium();
  const t0 = performance.now();
  kc = await startKeycloak();
  console.log(
    `Keycloak ${kc.version} (pid ${kc.pid}) answered after ${Math.round(kc.startMs)} ms, ${kc.startCpuMs ?? "?"} ms of CPU`,
  );
  const t1 = performance.now();
  dir = await mkdtemp(join(tmpdir(), "ncl-kc-test-"));
  const keyDir = join(dir, "client-keys");
  await mkdir(keyDir, { mode: 0o700 });
  reg = await registerAsReadmeSays(kc, { roleCount: ROLE_COUNT, groupCount: GROUP_COUNT, keyDir });
  ({ carol } = await registerClientSettings(reg));
  console.log(`realm set up as docs/provider-setup.md says in ${Math.round(performance.now() - t1)} ms`);
  nix = await makeNixEnv(join(dir, "nix"));
  const cacheDir = join(dir, "binary-cache");
  storePaths = Object.values(await makeBinaryCache(nix, cacheDir, FILES));
  cache = await startProtectedCache({
    cacheDir,
    issuer: reg.issuer,
    // mod_auth_openidc fetches the keys over https only: Keycloak's TLS listener, same realm.
    jwksUri: `${reg.httpsIssuer}/protocol/openid-connect/certs`,
    caBundle: kc.caCertPath,
    audience: AUDIENCE,
  });
  console.log(`whole bed up in ${Math.round(performance.now() - t0)} ms`);
});

after(async () => {
  printClockRows();
  const results = await Promise.allSettled([cache?.stop(), kc?.stop()]);
  for (const ws of workspaces) await ws.cleanup();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  for (const r of results) if (r.status === "rejected") throw r.reason;
});

async function workspace(clientId: string, extra: Record<string, unknown> = {}): Promise<Workspace> {
  const ws = await makeWorkspace();
  workspaces.push(ws);
  const config: Record<string, unknown> = {
    issuer: reg.issuer,
    client_id: clientId,
    cache_host: HOST,
    cache_url: cache.url,
    ...extra,
  };
  if (clientId === SERVICE_CLIENT) {
    const secretFile = join(ws.dir, "client-secret");
    await writeFile(secretFile, `${reg.serviceSecret}\n`, { mode: 0o600 });
    ws.secrets.add(reg.serviceSecret);
    config.client_secret_file = secretFile;
  }
  const keyFile = reg.clientKeyFiles[clientId];
  if (keyFile !== undefined) {
    config.token_endpoint_auth_method = "private_key_jwt";
    config.client_key_file = keyFile;
  }
  await ws.writeConfig(config);
  return ws;
}

async function ok(ws: Workspace, args: string[]): Promise<RunResult> {
  const r = await runCli(ws, args);
  assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
  return r;
}

function store(ws: Workspace, clientId: string): StateStore {
  return new StateStore(ws.stateDir, reg.issuer, clientId);
}

async function state(ws: Workspace, clientId: string): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(store(ws, clientId).file, "utf8")) as Record<string, unknown>;
}

/** A Keycloak session for `user`, stored as `login` would store it, then `refresh` writes the netrc. */
async function signedIn(clientId: string, user: TestUser): Promise<Workspace> {
  const ws = await workspace(clientId);
  const tokens = await signInOverHttp(reg.issuer, clientId, user);
  ws.secrets.add(tokens.refresh_token as string);
  ws.secrets.add(tokens.access_token as string);
  const s = store(ws, clientId);
  await writeState(s, { ...s.empty("user"), refresh_token: tokens.refresh_token as string });
  await ok(ws, ["refresh"]);
  return ws;
}

async function netrcToken(ws: Workspace): Promise<string> {
  const text = await readFile(ws.netrcPath, "utf8");
  // One-line or multi-line: the value after `password` in our entry.
  const m = new RegExp(
    `machine\\s+${HOST.replace(/\./g, "\\.")}\\s+login\\s+\\S+\\s+password\\s+(\\S+)`,
  ).exec(text);
  assert.ok(m?.[1] !== undefined, `no ${HOST} entry in the netrc:\n${text.slice(0, 200)}`);
  return m[1];
}

/** The claims every token for the cache must carry, checked like mod_auth_openidc checks them. */
function assertCacheClaims(token: string, azp: string): Record<string, unknown> {
  const c = jwtClaims(token);
  assert.equal(c.iss, reg.issuer);
  assert.ok([c.aud].flat().includes(AUDIENCE), `aud ${JSON.stringify(c.aud)} lacks ${AUDIENCE}`);
  assert.equal(c.azp, azp);
  return c;
}

/** curl with the netrc gets 200 from the protected cache, and nix-store -r substitutes the path. */
async function assertCacheAndNixAccept(ws: Workspace, what: string): Promise<void> {
  const c = await curl(`${cache.url}/nix-cache-info`, ws.netrcPath);
  assert.equal(
    c.status,
    200,
    `${what}: curl got ${c.status} (${c.wwwAuthenticate})\n${cache.errorLog().slice(-1500)}`,
  );
  for (const p of storePaths) assert.equal(await isValidPath(nix, p), false, `${p} already in the store`);
  const r = await nixStoreRealise(nix, storePaths, { substituter: cache.url, netrcFile: ws.netrcPath });
  assert.equal(r.code, 0, `${what}: nix-store -r failed:\n${r.stderr}`);
  assert.deepEqual(await Promise.all(storePaths.map((p) => readStoreFile(nix, p))), Object.values(FILES));
  await nixStoreDelete(nix, storePaths);
}

describe("the Keycloak harness", () => {
  test("without Java it fails with the command that installs it", async () => {
    const saved = process.env.JAVA_HOME;
    process.env.JAVA_HOME = join(dir, "no-such-jdk");
    try {
      await assert.rejects(
        requireJava(),
        /apt-get install -y --no-install-recommends openjdk-17-jre-headless/,
      );
    } finally {
      if (saved === undefined) delete process.env.JAVA_HOME;
      else process.env.JAVA_HOME = saved;
    }
  });

  test("a downloaded zip whose sha256 is not the pinned one is refused and moved aside", async () => {
    const saved = process.env.NIX_CACHE_LOGIN_TEST_CACHE;
    const cacheRoot = join(dir, "test-cache");
    const download = join(cacheRoot, `keycloak-${KEYCLOAK_DIST.version}`, "download");
    const zip = join(download, `keycloak-quarkus-dist-${KEYCLOAK_DIST.version}.zip`);
    await mkdir(download, { recursive: true });
    await writeFile(zip, "not the distribution\n");
    process.env.NIX_CACHE_LOGIN_TEST_CACHE = cacheRoot;
    try {
      await assert.rejects(prepareKeycloak(), /sha256 [0-9a-f]{64} is not the pinned [0-9a-f]{64}/);
      assert.equal(existsSync(zip), false);
    } finally {
      if (saved === undefined) delete process.env.NIX_CACHE_LOGIN_TEST_CACHE;
      else process.env.NIX_CACHE_LOGIN_TEST_CACHE = saved;
    }
  });
});

describe("Keycloak", () => {
  test("browser sign-in (Chromium on Keycloak's login page); the cache and Nix take the token", async () => {
    const ws = await workspace(PUBLIC_CLIENT);
    const resultFile = join(ws.dir, "driver.json");
    const r = await runCli(ws, ["login", "--browser-command", BROWSER_COMMAND], {
      env: {
        DRIVER_MODE: "login",
        DRIVER_USER: reg.alice.username,
        DRIVER_PASSWORD: reg.alice.password,
        DRIVER_RESULT: resultFile,
      },
      timeoutMs: 120_000,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^Signed in as alice at /m);
    const driver = await readDriverResult(resultFile);
    assert.equal(driver.ok, true, JSON.stringify(driver));
    assert.match(String(driver.text), /Signed in/);
    const claims = assertCacheClaims(await netrcToken(ws), PUBLIC_CLIENT);
    assert.equal(claims.preferred_username, "alice");
    const s = await state(ws, PUBLIC_CLIENT);
    assert.equal(typeof s.refresh_token, "string");
    assert.equal(s.username, "alice");
    await ok(ws, ["status"]);
    await assertCacheAndNixAccept(ws, "token from the browser sign-in");
  });

  test("login and init name an unknown client_id or an unregistered redirect URI (Keycloak's 400 pages) before any browser opens", async () => {
    const admin = new KeycloakAdmin(kc);
    const mark = join(dir, "browser-opened");
    const opener = join(dir, "opener.sh");
    await writeFile(opener, `#!/bin/sh\ntouch '${mark}'\n`, { mode: 0o755 });
    const host = new URL(reg.issuer).host.replace(/[.]/g, "\\.");

    const typo = await workspace("nix-cache-typo");
    const unknown = await runCli(typo, ["login", "--browser-command", opener, "--timeout", "10m"]);
    assert.equal(unknown.code, 2, unknown.stderr);
    assert.match(
      unknown.stderr,
      new RegExp(
        `^error: ${host} does not know the client "nix-cache-typo" \\(client_id in .*\\): its authorization endpoint answers HTTP 400\\n`,
      ),
    );
    const init = await runCli(typo, [
      "init",
      "--force",
      "--issuer",
      reg.issuer,
      "--client-id",
      "nix-cache-typo",
      "--cache-host",
      HOST,
      "--config",
      join(typo.dir, "init.toml"),
    ]);
    assert.equal(init.code, 2, init.stderr);
    assert.match(init.stderr, /does not know the client "nix-cache-typo" \(--client-id\)/);
    assert.ok(!existsSync(join(typo.dir, "init.toml")), "init wrote nothing");

    // A public client registered for a web app's redirect URI, not for a loopback one.
    await admin.call("POST", `/${REALM}/clients`, {
      clientId: "nix-cache-webapp",
      protocol: "openid-connect",
      publicClient: true,
      standardFlowEnabled: true,
      redirectUris: ["https://app.example.org/callback"],
      attributes: { "pkce.code.challenge.method": "S256" },
    });
    const web = await workspace("nix-cache-webapp");
    const redirect = await runCli(web, ["login", "--browser-command", opener]);
    assert.equal(redirect.code, 1, redirect.stderr);
    assert.match(
      redirect.stderr,
      new RegExp(
        `^error: ${host} does not accept the redirect URI http://127\\.0\\.0\\.1:\\d+/callback for client_id "nix-cache-webapp": its authorization endpoint answers HTTP 400\\nhint: ask the provider's administrator to register http://127\\.0\\.0\\.1/\\* `,
      ),
    );
    assert.ok(!existsSync(mark), "no browser was opened");
    for (const ws of [typo, web]) assert.ok(!existsSync(ws.netrcPath), "no netrc written");

    // A client set up as the README says passes the check, and the check signs no one in.
    const probeId = (await admin.call("POST", `/${REALM}/clients`, {
      clientId: "nix-cache-probe",
      protocol: "openid-connect",
      publicClient: true,
      standardFlowEnabled: true,
      redirectUris: ["http://127.0.0.1/*"],
      attributes: { "pkce.code.challenge.method": "S256" },
    })) as string;
    const probe = await workspace("nix-cache-probe");
    const good = await runCli(probe, [
      "init",
      "--force",
      "--issuer",
      reg.issuer,
      "--client-id",
      "nix-cache-probe",
      "--cache-host",
      HOST,
    ]);
    assert.equal(good.code, 0, good.stderr);
    assert.match(good.stderr, /knows client_id nix-cache-probe/);
    assert.deepEqual(await admin.call("GET", `/${REALM}/clients/${probeId}/session-count`), { count: 0 });
  });

  test("device sign-in: Keycloak requires PKCE on the device grant, the CLI sends it", async () => {
    // docs/provider-setup.md's client (PKCE method S256) refuses a device authorization request without PKCE.
    const bare = await fetch(`${reg.issuer}/protocol/openid-connect/auth/device`, {
      method: "POST",
      body: new URLSearchParams({ client_id: PUBLIC_CLIENT, scope: "openid" }),
    });
    assert.equal(bare.status, 400);
    assert.deepEqual(await bare.json(), {
      error: "invalid_request",
      error_description: "Missing parameter: code_challenge_method",
    });

    const ws = await workspace(PUBLIC_CLIENT);
    const r = await deviceLogin(ws, reg.alice);
    assert.ok(r.shown, `no verification URI in: ${r.stderr}`);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^Signed in as alice at /m);
    assertCacheClaims(await netrcToken(ws), PUBLIC_CLIENT);
    assert.equal(typeof (await state(ws, PUBLIC_CLIENT)).refresh_token, "string");
  });

  test("refresh rotates the refresh token; a reused one ends the session (exit 3)", async () => {
    const ws = await signedIn(PUBLIC_CLIENT, reg.alice);
    const first = (await state(ws, PUBLIC_CLIENT)).refresh_token as string;
    const firstAccess = await netrcToken(ws);
    await ok(ws, ["refresh"]);
    const second = (await state(ws, PUBLIC_CLIENT)).refresh_token as string;
    assert.notEqual(second, first, "Revoke Refresh Token is on: every refresh rotates it");
    assert.notEqual(await netrcToken(ws), firstAccess);
    const c = jwtClaims(await netrcToken(ws));
    // Keycloak's refresh token is a JWT whose exp the state keeps (SSO Session Idle, 24 h here).
    assert.equal((await runCli(ws, ["status"])).code, 0);

    // Someone replays the spent token: Keycloak refuses it and ends the session (PR 8130).
    const reuse = await refreshDirectly(reg.issuer, PUBLIC_CLIENT, first);
    assert.equal(reuse.status, 400);
    assert.equal(reuse.body.error, "invalid_grant");
    const after = await runCli(ws, ["refresh"]);
    assert.equal(after.code, 3, after.stderr);
    assert.match(after.stderr, /expired or was revoked/);
    assert.match(after.stderr, /nix-cache-login login/);
    assert.ok(typeof c.exp === "number");
  });

  test("10 parallel refreshes: all succeed, no reuse error, the session stays alive", async () => {
    const ws = await signedIn(PUBLIC_CLIENT, reg.alice);
    const before = (await state(ws, PUBLIC_CLIENT)).refresh_token as string;
    const runs = await Promise.all(Array.from({ length: 10 }, () => runCli(ws, ["refresh"])));
    for (const r of runs) assert.equal(r.code, 0, r.stderr);
    const afterAll = (await state(ws, PUBLIC_CLIENT)).refresh_token as string;
    assert.notEqual(afterAll, before);
    // Had two of them spent the same refresh token, Keycloak would have ended the session.
    await ok(ws, ["refresh"]);
    assert.notEqual((await state(ws, PUBLIC_CLIENT)).refresh_token, afterAll);
    await assertCacheAndNixAccept(ws, "token after parallel refreshes");
  });

  test("service-account: client credentials with the secret file; the cache and Nix take the token", async () => {
    const ws = await workspace(SERVICE_CLIENT);
    await ok(ws, ["service-account"]);
    assertCacheClaims(await netrcToken(ws), SERVICE_CLIENT);
    // Keycloak issues no refresh token to a service account by default.
    assert.equal((await state(ws, SERVICE_CLIENT)).refresh_token, undefined);
    await ok(ws, ["status"]);
    await assertCacheAndNixAccept(ws, "service-account token");

    const wrong = join(ws.dir, "wrong-secret");
    await writeFile(wrong, "not-the-secret\n", { mode: 0o600 });
    await ws.writeConfig({
      issuer: reg.issuer,
      client_id: SERVICE_CLIENT,
      cache_host: HOST,
      client_secret_file: wrong,
    });
    const bad = await runCli(ws, ["service-account"]);
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /rejected client nix-cache-server: unauthorized_client|invalid_client/);
  });

  for (const [clientId, kind, alg] of [
    [JWT_CLIENT, "RSA", "RS256"],
    [JWT_EC_CLIENT, "EC P-256", "ES256"],
  ] as const) {
    test(`service-account with private_key_jwt (${kind} key, "Signed JWT" client): the cache and Nix take the token`, async () => {
      const ws = await workspace(clientId);
      const r = await ok(ws, ["--verbose", "service-account"]);
      assert.match(r.stderr, new RegExp(`client authentication: private_key_jwt \\(${alg}\\)`));
      const token = await netrcToken(ws);
      assertCacheClaims(token, clientId);
      // Keycloak's service-account user, not a person.
      assert.equal(jwtClaims(token).preferred_username, `service-account-${clientId}`);
      assert.equal((await state(ws, clientId)).refresh_token, undefined);
      await ok(ws, ["status"]);
      await assertCacheAndNixAccept(ws, `private_key_jwt (${kind}) token`);
    });
  }

  test("private_key_jwt with a key Keycloak does not hold is refused: exit 2, the key file named, netrc untouched", async () => {
    const ws = await workspace(JWT_CLIENT);
    await ok(ws, ["service-account"]);
    const netrcBefore = await readFile(ws.netrcPath, "utf8");
    // Another RSA key (same algorithm: Keycloak finds the registered key, the signature fails), and
    // an EC key where Keycloak holds an RSA one (no key for ES256).
    for (const [name, args] of [
      ["other-rsa", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]],
      ["other-ec", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]],
    ] as const) {
      const wrongKey = join(ws.dir, `${name}.pem`);
      await execFileP("openssl", ["genpkey", ...args, "-out", wrongKey]);
      await ws.writeConfig({
        issuer: reg.issuer,
        client_id: JWT_CLIENT,
        cache_host: HOST,
        cache_url: cache.url,
        client_key_file: wrongKey,
      });
      const bad = await runCli(ws, ["service-account", "--min-valid", "2h"]);
      assert.equal(bad.code, 2, `${name}: ${bad.stderr}`);
      const lines = bad.stderr.trim().split("\n");
      // Keycloak says why (its error_description), shown without control characters.
      assert.match(
        lines[0]!,
        new RegExp(
          `rejected client ${JWT_CLIENT}: invalid_client \\(Client authentication with signed JWT failed`,
        ),
        name,
      );
      assert.ok(bad.stderr.includes(`the key in ${wrongKey}`), `${name}: ${bad.stderr}`);
      assert.equal(await readFile(ws.netrcPath, "utf8"), netrcBefore, `${name}: the netrc changed`);
    }
  });

  test("logout revokes the refresh token at Keycloak (public client) and removes our entry", async () => {
    const ws = await signedIn(PUBLIC_CLIENT, reg.alice);
    await writeFile(
      ws.netrcPath,
      `${await readFile(ws.netrcPath, "utf8")}machine other.example login o password p\n`,
    );
    const refreshToken = (await state(ws, PUBLIC_CLIENT)).refresh_token as string;
    await ok(ws, ["logout"]);
    assert.equal(await readFile(ws.netrcPath, "utf8"), "machine other.example login o password p\n");
    assert.equal(existsSync(store(ws, PUBLIC_CLIENT).file), false);
    const dead = await refreshDirectly(reg.issuer, PUBLIC_CLIENT, refreshToken);
    assert.equal(dead.status, 400, JSON.stringify(dead.body));
    assert.equal(dead.body.error, "invalid_grant");
  });

  test('an administrator\'s "log out all sessions": refresh exits 3, status reports it', async () => {
    const ws = await signedIn(PUBLIC_CLIENT, reg.alice);
    await ok(ws, ["status"]);
    // Realm settings -> Sessions -> "Sign out all active sessions".
    await reg.admin.call("POST", `/${REALM}/logout-all`);
    const r = await runCli(ws, ["refresh"]);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /expired or was revoked/);
    assert.match(r.stderr, /hint: .*nix-cache-login login/);
    const st = await runCli(ws, ["status"]);
    assert.equal(st.code, 3, st.stdout + st.stderr);
    assert.match(st.stdout, /^refresh token: +.*(ended|revoked)/m);
    assert.match(st.stderr, /nix-cache-login login/);
    const json = await runCli(ws, ["status", "--json"]);
    assert.equal(json.code, 3);
    const report = JSON.parse(json.stdout) as {
      refresh_token: { valid: boolean; session_ended: { at: string } | null };
    };
    assert.equal(report.refresh_token.valid, false);
    assert.match(report.refresh_token.session_ended?.at ?? "", /^\d{4}-\d\d-\d\dT/);

    // While the mark is there, refresh never sends the dead token again.
    const again = await runCli(ws, ["refresh"]);
    assert.equal(again.code, 3, again.stderr);
    // Keycloak's reason, as the first refresh got it: "Session not active" when the session is
    // already gone, "Stale token" when it is still found but the realm's not-before (set by the
    // logout) is after the token's iat; which one depends on Keycloak's timing.
    assert.match(again.stderr, /the session at .* ended at .*\((Session not active|Stale token)\)/);

    // A new session, stored as login stores new tokens (the mark cleared): refresh and status work.
    const tokens = await signInOverHttp(reg.issuer, PUBLIC_CLIENT, reg.alice);
    ws.secrets.add(tokens.refresh_token as string);
    const s = store(ws, PUBLIC_CLIENT);
    const ended = s.read();
    assert.ok(ended?.session_ended !== undefined);
    await writeState(s, {
      ...ended,
      refresh_token: tokens.refresh_token as string,
      session_ended: undefined,
    });
    await ok(ws, ["refresh"]);
    await ok(ws, ["status"]);
  });

  test("a large token (many roles and groups) is written so that this machine's curl reads it", async () => {
    const ws = await signedIn(PUBLIC_CLIENT, reg.bob);
    const token = await netrcToken(ws);
    const claims = assertCacheClaims(token, PUBLIC_CLIENT);
    assert.equal((claims.realm_access as { roles: string[] }).roles.length, ROLE_COUNT + 3);
    assert.equal((claims.groups as string[]).length, GROUP_COUNT);
    assert.ok(
      token.length + ONE_LINE_PREFIX > CURL_788_LINE && token.length <= CURL_788_LINE,
      `bob's token is ${token.length} bytes: adjust ROLE_COUNT so that it lies in ` +
        `${CURL_788_LINE - ONE_LINE_PREFIX + 1}..${CURL_788_LINE} (too long for a one-line entry, short enough alone)`,
    );
    const lines = (await readFile(ws.netrcPath, "latin1")).split("\n");
    for (const line of lines) assert.ok(line.length <= CURL_788_LINE, `a netrc line of ${line.length} bytes`);
    await assertCacheAndNixAccept(ws, "large token");
    await ok(ws, ["status"]);
  });

  test("a lightweight access token (same user, client with lightweight tokens) is small and accepted", async () => {
    const ws = await signedIn(LIGHT_CLIENT, reg.bob);
    const token = await netrcToken(ws);
    const claims = assertCacheClaims(token, LIGHT_CLIENT);
    assert.equal(typeof claims.sub, "string", "the sub mapper puts `sub` back for mod_auth_openidc");
    assert.equal(claims.realm_access, undefined);
    assert.equal(claims.groups, undefined);
    assert.ok(token.length < 1500, `${token.length} bytes`);
    await assertCacheAndNixAccept(ws, "lightweight token");
  });

  test("doctor: every check ok against Keycloak and the protected cache", async () => {
    const ws = await signedIn(PUBLIC_CLIENT, reg.alice);
    // The user's Nix reads the netrc the CLI writes (nix.conf from the Nix env, netrc-file changed).
    const confDir = join(ws.dir, "nix-conf");
    await mkdir(confDir);
    const conf = (await readFile(join(nix.confDir, "nix.conf"), "utf8")).replace(
      /^netrc-file = .*$/m,
      `netrc-file = ${ws.netrcPath}`,
    );
    await writeFile(join(confDir, "nix.conf"), conf);
    const r = await runCli(ws, ["doctor", "--json"], { env: { NIX_CONF_DIR: confDir } });
    const report = JSON.parse(r.stdout) as {
      ok: boolean;
      checks: { id: string; status: string; summary: string }[];
    };
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(report.ok, true);
    const notOk = report.checks.filter((c) => c.status !== "ok");
    assert.deepEqual(notOk, [], "every check is ok");
    const ids = report.checks.map((c) => c.id);
    for (const id of [
      "config",
      "token",
      "netrc_file",
      "netrc_entry",
      "netrc_token",
      "nix",
      "nix_netrc_file",
      "cache",
    ]) {
      assert.ok(ids.includes(id), `doctor ran the ${id} check`);
    }
  });
});

/** `login` in Chromium (the driver as the browser command) as `user`; the driver's summary too. */
async function browserLogin(
  ws: Workspace,
  user: TestUser,
  args: string[] = [],
  driverMode = "login",
): Promise<RunResult & { driver: () => Promise<Record<string, unknown>> }> {
  const resultFile = join(ws.dir, `driver-${Math.random().toString(36).slice(2)}.json`);
  const r = await runCli(ws, ["login", "--browser-command", BROWSER_COMMAND, ...args], {
    env: {
      DRIVER_MODE: driverMode,
      DRIVER_USER: user.username,
      DRIVER_PASSWORD: user.password,
      DRIVER_RESULT: resultFile,
    },
    timeoutMs: 120_000,
  });
  return { ...r, driver: () => readDriverResult(resultFile) };
}

/** `login --device`, approved in Chromium on Keycloak's device page once the CLI shows the code. */
async function deviceLogin(ws: Workspace, user: TestUser): Promise<RunResult & { shown: boolean }> {
  let driverDone: ReturnType<typeof spawnDriver> | undefined;
  const r = await runCli(ws, ["login", "--device"], {
    timeoutMs: 120_000,
    onSpawn: (child) =>
      watchStderr(
        child,
        new RegExp(`(http://127\\.0\\.0\\.1:\\d+/realms/${REALM}/device\\?user_code=\\S+)`),
        (m) => {
          driverDone = spawnDriver(m[1] as string, {
            DRIVER_MODE: "keycloak-device",
            DRIVER_USER: user.username,
            DRIVER_PASSWORD: user.password,
          });
        },
      ),
  });
  if (driverDone !== undefined) {
    const d = await driverDone;
    assert.equal(d.code, 0, d.stderr);
  }
  return { ...r, shown: driverDone !== undefined };
}

/** The first line of stderr, which carries the error. */
function errorLine(r: RunResult): string {
  return r.stderr.split("\n").find((l) => l.startsWith("error: ")) ?? "";
}

function hintLine(r: RunResult): string {
  return r.stderr.split("\n").find((l) => l.startsWith("hint: ")) ?? "";
}

describe("Keycloak: client settings real sites turn on", () => {
  test('"Use refresh tokens" off: signed in without a refresh token; refresh exits 0 while the token lasts, then 3 saying why', async () => {
    const id = CLIENT_SETTINGS.noRefresh;
    const ws = await workspace(id);
    const login = await browserLogin(ws, reg.alice);
    assert.equal(login.code, 0, login.stderr);
    assert.equal((await login.driver()).ok, true);
    assert.match(login.stderr, /^ {2}access token: {2}valid, expires in 1h \(/m);
    assert.match(login.stderr, /^ {2}refresh token: none \(127\.0\.0\.1:\d+ issues none to this client: /m);
    assert.equal((await state(ws, id)).refresh_token, undefined);
    assertCacheClaims(await netrcToken(ws), id);
    for (const args of [["refresh"], ["refresh", "--min-valid", "2h"]]) {
      const r = await runCli(ws, args);
      assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
      assert.match(
        r.stderr,
        /^warning: the token cannot be renewed: .* issues no refresh token to client nix-cache-no-refresh/m,
      );
    }
    await ok(ws, ["refresh", "--min-valid", "10m"]);
    const st = await ok(ws, ["status"]);
    assert.match(st.stdout, /^refresh token: +none \(/m);

    // An hour later (the state says the token has expired): only a sign-in helps, and why is said.
    const s = store(ws, id);
    const saved = s.read();
    assert.ok(saved !== undefined);
    await writeState(s, { ...saved, access_token_expires_at: new Date(Date.now() - 1000).toISOString() });
    const r = await runCli(ws, ["refresh", "--min-valid", "10m"]);
    assert.equal(r.code, 3, r.stderr);
    assert.match(
      errorLine(r),
      /^error: the access token expired, and 127\.0\.0\.1:\d+ issues no refresh token to client nix-cache-no-refresh, so a browser sign-in is needed each time the access token expires$/,
    );
    assert.match(
      hintLine(r),
      /enable refresh tokens for client nix-cache-no-refresh .*"Use refresh tokens".*offline_access/,
    );
    const expired = await runCli(ws, ["status"]);
    assert.equal(expired.code, 3);
    assert.match(expired.stderr, /issues no refresh token to client nix-cache-no-refresh/);
  });

  test('"Pushed authorization request required": the CLI sees Keycloak refuse the plain request and pushes it (RFC 9126)', async () => {
    const id = CLIENT_SETTINGS.par;
    // What Keycloak answers a request that was not pushed, seen from the CLI's --verbose.
    const ws = await workspace(id);
    const login = await browserLogin(ws, reg.alice, ["--verbose"]);
    assert.equal(login.code, 0, login.stderr);
    assert.equal((await login.driver()).ok, true);
    assert.match(login.stderr, /the authorization endpoint requires a pushed authorization request/);
    assert.match(
      login.stderr,
      /POST http:\/\/127\.0\.0\.1:\d+\/realms\/test\/protocol\/openid-connect\/ext\/par\/request -> 201/,
    );
    assert.match(login.stderr, /^Signed in as alice at /m);
    assertCacheClaims(await netrcToken(ws), id);
    await ok(ws, ["refresh"]);
  });

  test('"Require DPoP bound tokens": browser and device sign-ins stop before the user is asked, exit 2 with the fix', async () => {
    const id = CLIENT_SETTINGS.dpop;
    const ws = await workspace(id);
    const browser = await browserLogin(ws, reg.alice);
    assert.equal(browser.code, 2, browser.stderr);
    assert.doesNotMatch(browser.stderr, /Opening a browser/, "no browser was opened");
    const message =
      /^error: client nix-cache-dpop at 127\.0\.0\.1:\d+ may only get DPoP-bound tokens \(DPoP proof is missing\), which a netrc cannot carry \(Nix sends the token as a password, without a DPoP proof\)$/;
    assert.match(errorLine(browser), message);
    assert.match(hintLine(browser), /turn off "Require DPoP bound tokens" for client nix-cache-dpop/);
    const device = await deviceLogin(ws, reg.alice);
    assert.equal(device.code, 2, device.stderr);
    assert.equal(device.shown, false, "the user code was never shown");
    assert.match(errorLine(device), message);
    await assert.rejects(readFile(ws.netrcPath), { code: "ENOENT" });
  });

  test("the OAuth 2.1 profile for public clients (a realm client policy): device sign-in and refresh work; the browser sign-in is refused at once", async () => {
    const id = CLIENT_SETTINGS.oauth21;
    const ws = await workspace(id);
    // Browser: the profile's secure-redirect-uris-enforcer takes no http redirect URI, loopback
    // included ("allow-http-scheme" is not set), so Keycloak stops at an error page.
    const browser = await browserLogin(ws, reg.alice);
    assert.equal(browser.code, 2, browser.stderr);
    assert.doesNotMatch(browser.stderr, /Opening a browser/);
    assert.match(
      errorLine(browser),
      /^error: 127\.0\.0\.1:\d+ refuses the redirect URI http:\/\/127\.0\.0\.1:\d+\/callback for client_id "nix-cache-oauth21" by a client policy: Invalid Redirect Uri: invalid loopback address \(HTTP 400\)$/,
    );
    assert.match(hintLine(browser), /OAuth 2\.1 profile/);
    assert.match(hintLine(browser), /--device/);
    // That page is what the user's browser would have stayed on.
    const page = await spawnDriverResult(await authorizationUrl(id), "show");
    assert.match(String(page.text), /Invalid Redirect Uri: invalid loopback address/);

    // Device: PKCE, the code and the token requests pass (for a client saved before the policy,
    // Keycloak 26.7 asks no DPoP proof of the device grant or of a refresh): Bearer tokens the
    // cache takes.
    const device = await deviceLogin(ws, reg.alice);
    assert.equal(device.shown, true, device.stderr);
    assert.equal(device.code, 0, device.stderr);
    const token = await netrcToken(ws);
    assert.equal(jwtClaims(token).cnf, undefined, "not bound to a key");
    assert.equal((await curl(`${cache.url}/nix-cache-info`, ws.netrcPath)).status, 200);
    await ok(ws, ["refresh"]);
    assert.notEqual(await netrcToken(ws), token);

    // And Keycloak refuses to save the client as the README registers it while the policy holds:
    // the profile takes no http redirect URI (and would turn "Require DPoP bound tokens" on at
    // each save: then the case above).
    const rep = (await reg.admin.call("GET", `/${REALM}/clients/${reg.clientIds[id]}`)) as Record<
      string,
      unknown
    >;
    await assert.rejects(
      reg.admin.call("PUT", `/${REALM}/clients/${reg.clientIds[id]}`, rep),
      /400 .*Invalid Redirect Uri: invalid loopback address/,
    );
  });

  test("offline_access: an offline token, shown as such; refresh keeps it working", async () => {
    const ws = await workspace(PUBLIC_CLIENT, { scopes: ["offline_access"] });
    const login = await browserLogin(ws, reg.alice);
    assert.equal(login.code, 0, login.stderr);
    assert.equal((await login.driver()).ok, true, "the browser is done");
    const offline = "offline (no expiry; ends when revoked or idle past the realm's offline idle time)";
    assert.ok(login.stderr.includes(`  refresh token: ${offline}\n`), login.stderr);
    const saved = await state(ws, PUBLIC_CLIENT);
    assert.equal(jwtClaims(saved.refresh_token as string).typ, "Offline");
    assert.equal(saved.refresh_token_offline, true);
    const st = await ok(ws, ["status"]);
    assert.match(
      st.stdout,
      // ...and where it is kept (here the state file: the test bed has no Secret Service).
      new RegExp(`^refresh token: +${offline.replace(/[()]/g, "\\$&")}, in the state file(: .*)?$`, "m"),
    );
    // One time format throughout.
    const times = st.stdout.match(/\d{4}-\d\d-\d\dT[^ )]*/g) ?? [];
    assert.ok(times.length > 0, st.stdout);
    for (const t of times) assert.match(t, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    await ok(ws, ["refresh"]);
    assert.ok((await ok(ws, ["status"])).stdout.includes(offline));
    const json = JSON.parse((await ok(ws, ["status", "--json"])).stdout) as {
      refresh_token: { offline: boolean; valid: boolean };
    };
    assert.deepEqual([json.refresh_token.offline, json.refresh_token.valid], [true, true]);
    await assertCacheAndNixAccept(ws, "token renewed with an offline token");
  });

  test("a disabled user: Keycloak keeps the browser on its page; the timeout says so instead of hurrying the user", async () => {
    const ws = await workspace(PUBLIC_CLIENT);
    // 20 s: time for Chromium to start and reach Keycloak's page on a loaded 2-core machine (the
    // driver's summary below says that it did), and no more: the CLI waits all of it.
    const login = await browserLogin(ws, carol, ["--timeout", "20s"], "stuck");
    const driver = await login.driver();
    assert.equal(driver.ok, true, JSON.stringify(driver));
    assert.match(String(driver.text), /Account is disabled, contact your administrator\./);
    assert.equal(login.code, 1, login.stderr);
    assert.match(
      errorLine(login),
      /^error: no answer from the sign-in at 127\.0\.0\.1:\d+ within 20s: the browser went to its page but did not come back$/,
    );
    assert.match(
      hintLine(login),
      /if that page shows an error \(such as a disabled account\), ask the administrator/,
    );
    assert.doesNotMatch(login.stderr, /sooner/);
  });
});

/** An authorization request for clientId with a loopback redirect, as the CLI would send it. */
async function authorizationUrl(clientId: string): Promise<string> {
  const u = new URL(`${reg.issuer}/protocol/openid-connect/auth`);
  u.search = new URLSearchParams({
    client_id: clientId,
    redirect_uri: "http://127.0.0.1:40000/callback",
    response_type: "code",
    scope: "openid",
    state: "s".repeat(22),
    code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
    code_challenge_method: "S256",
  }).toString();
  return u.href;
}

async function spawnDriverResult(url: string, mode: string): Promise<Record<string, unknown>> {
  const resultFile = join(dir, `driver-${Math.random().toString(36).slice(2)}.json`);
  const run = await spawnDriver(url, { DRIVER_MODE: mode, DRIVER_RESULT: resultFile });
  assert.equal(run.code, 0, run.stderr);
  return readDriverResult(resultFile);
}

/** Issue 20's clock cases (test/support/clock-cases.ts) against Keycloak and its protected cache. */
const keycloakBed = (): ClockBed => ({
  name: "Keycloak",
  tokenPath: "/protocol/openid-connect/token",
  async userWorkspace(o = {}) {
    if (o.renewed !== false) return signedIn(PUBLIC_CLIENT, reg.alice);
    const ws = await workspace(PUBLIC_CLIENT);
    const tokens = await signInOverHttp(reg.issuer, PUBLIC_CLIENT, reg.alice);
    ws.secrets.add(tokens.refresh_token as string);
    ws.secrets.add(tokens.access_token as string);
    const s = store(ws, PUBLIC_CLIENT);
    await writeState(s, { ...s.empty("user"), refresh_token: tokens.refresh_token as string });
    return ws;
  },
  serviceWorkspace: () => workspace(SERVICE_CLIENT),
  async assertCacheAccepts(ws, what) {
    const c = await curl(`${cache.url}/nix-cache-info`, ws.netrcPath);
    assert.equal(c.status, 200, `${what}: the cache answered ${c.status} (${c.wwwAuthenticate})`);
  },
});

describe("Keycloak with the CLI's clock 2 h off (libfaketime)", () => clockSkewCases(keycloakBed));

/**
 * The NixOS VM tests (nix/tests/vm/) cannot run here, and their scripted browser and realm rest on
 * what Keycloak does. Their comments name these tests, which check each of those assumptions with
 * the VM realm's own clients, taken from nix/tests/vm/realm.nix (evaluated by nix-instantiate) and
 * created in this Keycloak under a `vm-` prefix.
 */
describe("what the NixOS VM tests assume of Keycloak (nix/tests/vm/)", () => {
  const VM_PREFIX = "vm-";
  let vmClients: Record<string, Record<string, unknown>>;
  let vmKeyFile: string;

  before(async () => {
    // nix-instantiate, from the same package.
    requireNix();
    const keyDir = join(dir, "vm-client-key");
    await mkdir(keyDir, { mode: 0o700 });
    // As the VM tests' `certs` makes them.
    vmKeyFile = join(keyDir, "client-jwt.key");
    const certFile = join(keyDir, "client-jwt.crt");
    await execFileP("openssl", [
      "genpkey",
      "-algorithm",
      "RSA",
      "-pkeyopt",
      "rsa_keygen_bits:2048",
      "-out",
      vmKeyFile,
    ]);
    await execFileP("openssl", [
      "req",
      "-new",
      "-x509",
      "-key",
      vmKeyFile,
      "-subj",
      "/CN=nix-cache-server-jwt",
      "-days",
      "1",
      "-out",
      certFile,
    ]);
    // The PEM's body, as the VM's realm build puts it into the realm (sed '1d;$d' | tr -d '\n').
    const certificate = (await readFile(certFile, "utf8")).trim().split("\n").slice(1, -1).join("");
    const { stdout } = await execFileP(
      "nix-instantiate",
      [
        "--readonly-mode",
        "--eval",
        "--strict",
        "--json",
        "--argstr",
        "jwtCertificate",
        certificate,
        "--expr",
        `{ jwtCertificate }: import ${join(ROOT, "nix/tests/vm/realm.nix")} {
          realmName = "vm"; audience = "${AUDIENCE}"; accessTokenLifespan = 60;
          user = { name = "alice"; password = "unused"; }; serverClientSecret = "unused";
          inherit jwtCertificate;
        }`,
      ],
      { env: { ...process.env, NIX_CONFIG: "build-users-group =", XDG_CACHE_HOME: join(dir, "nix-cache") } },
    );
    const realm = JSON.parse(stdout) as { clients: Record<string, unknown>[] };
    vmClients = {};
    for (const client of realm.clients) {
      const clientId = `${VM_PREFIX}${String(client.clientId)}`;
      await reg.admin.call("POST", `/${REALM}/clients`, { ...client, clientId });
      vmClients[String(client.clientId)] = client;
    }
  });

  test("the scripted browser: the login form is #kc-form-login with username and password, and the VM client's http://127.0.0.1/* takes a redirect on any port", async () => {
    const clientId = `${VM_PREFIX}nix-cache`;
    assert.deepEqual(vmClients["nix-cache"]?.redirectUris, ["http://127.0.0.1/*"]);
    const authUrl = (redirectUri: string) =>
      `${reg.issuer}/protocol/openid-connect/auth?${new URLSearchParams({
        client_id: clientId,
        redirect_uri: redirectUri,
        response_type: "code",
        scope: "openid",
        state: "s",
        code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        code_challenge_method: "S256",
      }).toString()}`;
    // What the VM's driver reads with `htmlq '#kc-form-login' --attribute action`, and the
    // fields it posts.
    const page = await fetch(authUrl("http://127.0.0.1:41234/callback"));
    const html = await page.text();
    assert.equal(page.status, 200, html.slice(0, 300));
    const form = /<form\b[^>]*\bid="kc-form-login"[^>]*>([\s\S]*?)<\/form>/.exec(html);
    assert.ok(form !== null, `no <form id="kc-form-login"> on Keycloak ${kc.version}'s login page`);
    assert.match(form[0], /^<form\b[^>]*\baction="[^"]+"/);
    for (const field of ["username", "password"])
      assert.match(
        form[1]!,
        new RegExp(`<input\\b[^>]*\\bname="${field}"`),
        `the form has no ${field} field`,
      );

    // Two ports, neither registered: the code comes back to each, port and all (the driver's
    // curl -L follows that redirect to the CLI's loopback server).
    for (const port of [41234, 59876]) {
      const tokens = await signInOverHttp(
        reg.issuer,
        clientId,
        reg.alice,
        `http://127.0.0.1:${port}/callback`,
      );
      assert.equal(jwtClaims(tokens.access_token as string).azp, clientId);
    }
    // Only the port is let go: another loopback name is refused.
    const other = await fetch(authUrl("http://localhost:41234/callback"));
    assert.equal(other.status, 400);
    assert.match(await other.text(), /Invalid parameter: redirect_uri/);
  });

  test("the VM realm's Signed JWT client (certificate in jwt.credential.certificate) takes the CLI's private_key_jwt", async () => {
    const clientId = `${VM_PREFIX}nix-cache-server-jwt`;
    assert.equal(vmClients["nix-cache-server-jwt"]?.clientAuthenticatorType, "client-jwt");
    const ws = await makeWorkspace({
      issuer: reg.issuer,
      client_id: clientId,
      cache_host: HOST,
      // As the VM's server-key test writes it.
      token_endpoint_auth_method: "private_key_jwt",
      client_key_file: vmKeyFile,
    });
    workspaces.push(ws);
    const r = await ok(ws, ["--verbose", "service-account"]);
    assert.match(r.stderr, /client authentication: private_key_jwt \(RS256\)/);
    const claims = assertCacheClaims(await netrcToken(ws), clientId);
    assert.equal(claims.preferred_username, `service-account-${clientId}`);
  });
});
