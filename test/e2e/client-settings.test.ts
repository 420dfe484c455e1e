/**
 * Client settings providers really use, in the Keycloak-shaped realm (test/support/realm.ts, each
 * rule with its Keycloak source): a public client that gets no refresh token, a client that must
 * push its authorization requests (RFC 9126), and a realm that requires that of every client. The
 * built CLI signs in with Debian's Chromium; test/e2e/keycloak.test.ts has the same cases against
 * the real Keycloak.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { StateStore } from "../../src/store/state.ts";
import { writeState } from "../../src/store/write.ts";
import { requireChromium } from "../support/chromium.ts";
import { BROWSER_COMMAND, readDriverResult } from "../support/driver.ts";
import { makeWorkspace, runCli, type RunResult, type Workspace } from "../support/cli.ts";
import { startRealm, type Realm } from "../support/realm.ts";

const CACHE_HOST = "cache.example.test";

let realm: Realm;
let parRealm: Realm;
const workspaces: Workspace[] = [];

before(async () => {
  requireChromium();
  [realm, parRealm] = await Promise.all([
    startRealm({ tls: false }),
    startRealm({ tls: false, requirePushedAuthorizationRequests: true }),
  ]);
});

after(async () => {
  await Promise.all([realm?.stop(), parRealm?.stop()]);
  await Promise.all(workspaces.map((ws) => ws.cleanup()));
});

async function workspace(r: Realm, clientId: string): Promise<Workspace> {
  const ws = await makeWorkspace();
  workspaces.push(ws);
  await ws.writeConfig({ issuer: r.issuer, client_id: clientId, cache_host: CACHE_HOST });
  return ws;
}

/** `login` with Chromium (the driver signs in as alice); the driver's summary is read back. */
async function browserLogin(
  ws: Workspace,
  args: string[] = [],
): Promise<RunResult & { driver: Record<string, unknown> }> {
  const resultFile = join(ws.dir, `driver-${Math.random().toString(36).slice(2)}.json`);
  const r = await runCli(ws, ["login", "--browser-command", BROWSER_COMMAND, ...args], {
    env: { DRIVER_MODE: "login", DRIVER_RESULT: resultFile },
    timeoutMs: 90_000,
  });
  return { ...r, driver: await readDriverResult(resultFile) };
}

/** The stored access token, made expired (as it is once its lifetime has passed). */
async function expireAccessToken(ws: Workspace, r: Realm, clientId: string): Promise<void> {
  const store = new StateStore(ws.stateDir, r.issuer, clientId);
  const state = store.read();
  assert.ok(state !== undefined);
  await writeState(store, { ...state, access_token_expires_at: new Date(Date.now() - 60_000).toISOString() });
}

describe("a public client that gets no refresh token", () => {
  test("login works, refresh exits 0 while the token lasts, then 3 saying why; status and doctor agree", async () => {
    const id = realm.noRefreshClientId;
    const ws = await workspace(realm, id);
    const login = await browserLogin(ws);
    assert.equal(login.code, 0, login.stderr);
    assert.equal(login.driver.title, "Signed in", JSON.stringify(login.driver));
    // A fresh 5-minute token reads as 5 minutes, not 4.
    assert.match(
      login.stderr,
      /^ {2}access token: {2}valid, expires in 5m \(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\)$/m,
    );
    assert.match(login.stderr, /^ {2}refresh token: none \(127\.0\.0\.1:\d+ issues none to this client: /m);
    assert.match(
      login.stderr,
      /^warning: 127\.0\.0\.1:\d+ issues no refresh token to client nix-cache-no-refresh, so a browser sign-in is needed each time the access token expires; to stay signed in, enable refresh tokens/m,
    );
    const state = JSON.parse(
      await readFile(new StateStore(ws.stateDir, realm.issuer, id).file, "utf8"),
    ) as Record<string, unknown>;
    assert.equal(state.refresh_token, undefined);
    assert.equal(typeof state.access_token, "string");

    // A timer: the token lasts 5 minutes, less than --min-valid, and nothing can renew it. Not a
    // failure while it lasts.
    for (const args of [["refresh"], ["refresh", "--min-valid", "10m"], ["refresh", "--min-valid", "1m"]]) {
      const r = await runCli(ws, args);
      assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
      assert.doesNotMatch(r.stderr, /not signed in/);
    }
    const renewing = await runCli(ws, ["refresh", "--min-valid", "10m"]);
    assert.match(
      renewing.stderr,
      /^warning: the token cannot be renewed: 127\.0\.0\.1:\d+ issues no refresh token to client nix-cache-no-refresh, so a browser sign-in is needed each time the access token expires; the current one is valid, expires in [45]m /m,
    );
    // A timer's --quiet run: exit 0 and nothing printed (cron mails nothing).
    const quiet = await runCli(ws, ["refresh", "--quiet", "--min-valid", "10m"]);
    assert.deepEqual([quiet.code, quiet.stdout, quiet.stderr], [0, "", ""]);
    const status = await runCli(ws, ["status"]);
    assert.equal(status.code, 0, status.stdout + status.stderr);
    assert.match(
      status.stdout,
      /^refresh token: +none \(127\.0\.0\.1:\d+ issues none to this client: sign in again when the access token expires\)$/m,
    );
    const json = JSON.parse((await runCli(ws, ["status", "--json"])).stdout) as {
      refresh_token: { present: boolean; not_issued: boolean };
    };
    assert.deepEqual([json.refresh_token.present, json.refresh_token.not_issued], [false, true]);

    // Once it has expired: exit 3, the reason and what would keep the user signed in.
    await expireAccessToken(ws, realm, id);
    for (const args of [["refresh"], ["refresh", "--min-valid", "10m"]]) {
      const r = await runCli(ws, ["--json", ...args]);
      assert.equal(r.code, 3, r.stderr);
      const lines = r.stderr.trim().split("\n");
      assert.match(
        lines[0] ?? "",
        /^error: the access token expired, and 127\.0\.0\.1:\d+ issues no refresh token to client nix-cache-no-refresh, so a browser sign-in is needed each time the access token expires$/,
      );
      assert.match(
        lines[1] ?? "",
        /^hint: run `nix-cache-login login`; to stay signed in, enable refresh tokens for client nix-cache-no-refresh .*offline_access/,
      );
      assert.equal((JSON.parse(r.stdout) as { error: { code: string } }).error.code, "no_refresh_token");
    }
    const expired = await runCli(ws, ["status"]);
    assert.equal(expired.code, 3);
    assert.match(
      expired.stderr,
      /^hint: run `nix-cache-login login` \(127\.0\.0\.1:\d+ issues no refresh token to client nix-cache-no-refresh, .*offline_access/m,
    );
    const doctor = await runCli(ws, ["doctor", "--json"]);
    const report = JSON.parse(doctor.stdout) as {
      checks: { id: string; status: string; summary: string; fix?: string[] }[];
    };
    const token = report.checks.find((c) => c.id === "token");
    assert.equal(token?.status, "problem", doctor.stdout);
    assert.match(token?.summary ?? "", /expired .* issues no refresh token to client nix-cache-no-refresh/);
    assert.ok(
      token?.fix?.some((f) => /enable refresh tokens/.test(f)),
      JSON.stringify(token),
    );
  });
});

describe("pushed authorization requests (RFC 9126)", () => {
  test("a client that must push them: the CLI sees the authorization endpoint's refusal first and pushes", async () => {
    const ws = await workspace(realm, realm.parClientId);
    realm.clearRequests();
    const login = await runCliVerbose(ws);
    assert.equal(login.code, 0, login.stderr);
    assert.match(login.stderr, /the authorization endpoint requires a pushed authorization request/);
    assert.match(login.stderr, /^Signed in as alice at /m);
    assert.equal(realm.countRequests("/ext/par/request"), 1, "one pushed request");
  });

  test("a realm whose discovery document requires them: pushed from the start", async () => {
    const ws = await workspace(parRealm, parRealm.publicClientId);
    parRealm.clearRequests();
    const login = await runCliVerbose(ws);
    assert.equal(login.code, 0, login.stderr);
    assert.doesNotMatch(login.stderr, /requires a pushed authorization request/);
    assert.match(login.stderr, /\(pushed request\)/);
    // The client check before the browser is pushed too, then the sign-in's own request: no request
    // that was not pushed reached the authorization endpoint (the realm would have refused it,
    // and the check would have said so above).
    assert.equal(parRealm.countRequests("/ext/par/request"), 2, "the check's push and the sign-in's");
    assert.equal(parRealm.countRequests("/protocol/openid-connect/auth"), 2);
  });
});

async function runCliVerbose(ws: Workspace): Promise<RunResult & { driver: Record<string, unknown> }> {
  const r = await browserLogin(ws, ["--verbose"]);
  assert.equal(r.driver.title, "Signed in", `${JSON.stringify(r.driver)}\n${r.stderr}`);
  return r;
}
