/**
 * What a provider says about time, taken at its word only where its word makes sense. The built
 * CLI runs against the hostile provider (test/support/hostile-provider.ts), whose token answers
 * carry crafted lifetimes (`expires_in: 0`, huge, fractional, negative), crafted clock readings
 * (an access token `iat` of 1e13 seconds, a `Date:` header in year 275760), or none: an expired
 * token is never called fresh, no message says "NaN", no clock reading ends in an internal error,
 * and `refresh` tells of a token whose expiry the clock hides what `status` tells.
 */
import assert from "node:assert/strict";
import { mkdir, readFile } from "node:fs/promises";
import { after, afterEach, before, describe, test } from "node:test";
import { StateStore, type TokenState } from "../../src/store/state.ts";
import { writeState } from "../../src/store/write.ts";
import { runCli, type RunResult, type Workspace } from "../support/cli.ts";
import { hostileWorkspace } from "../support/realm-workspaces.ts";
import { startHostileProvider, type HostileProvider } from "../support/hostile-provider.ts";

const HOST = "127.0.0.1";
const HOUR = 3600_000;

let op: HostileProvider;
const workspaces: Workspace[] = [];

before(async () => {
  op = await startHostileProvider();
});

afterEach(() => op.off("/token"));

after(async () => {
  await op.stop();
  await Promise.all(workspaces.map((ws) => ws.cleanup()));
});

/** An unsigned JWT: the CLI reads an access token's claims only for scheduling. */
function jwt(claims: Record<string, unknown>): string {
  return `e30.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.c2ln`;
}

async function workspace(mode: "service" | "user"): Promise<Workspace> {
  const ws = await hostileWorkspace(op.issuer, mode, { cache_host: HOST, timeout: "10s" });
  workspaces.push(ws);
  return ws;
}

/** A user sign-in's token state, as written before the CLI runs. */
async function seedUser(ws: Workspace, fields: Partial<TokenState>): Promise<StateStore> {
  const store = new StateStore(ws.stateDir, op.issuer, "nix-cache");
  await mkdir(ws.stateDir, { recursive: true, mode: 0o700 });
  await writeState(store, { ...store.empty("user"), ...fields });
  return store;
}

/** No NaN, no internal error, no stack: whatever the provider said about time. */
function assertSane(r: RunResult, what: string): void {
  // Paths (the workspace's random name) left out: they could spell anything.
  const out = (r.stdout + r.stderr).replace(/\/[^\s:)]+/g, "/PATH");
  assert.doesNotMatch(
    out,
    /NaN|Invalid Date|Invalid time value|RangeError|internal|\n\s+at /,
    `${what}:\n${out}`,
  );
}

function statusJson(r: RunResult): {
  access_token: { valid: boolean; expires_at: string | null; expiry_assumed: boolean };
  clock: { skew_seconds: number; moved: boolean };
} {
  return JSON.parse(r.stdout) as ReturnType<typeof statusJson>;
}

describe("expires_in", () => {
  for (const [name, accessToken] of [
    ["an opaque token", "opaque-expired-at-issue-1"],
    ["a JWT whose exp is an hour away", jwt({ exp: Math.floor((Date.now() + HOUR) / 1000) })],
  ] as const) {
    test(`0, ${name}: status says expired, refresh --min-valid renews it`, async () => {
      op.on("/token", () => ({ body: { access_token: accessToken, token_type: "Bearer", expires_in: 0 } }));
      const ws = await workspace("service");
      const got = await runCli(ws, ["service-account"]);
      assert.equal(got.code, 0, got.stderr);
      assertSane(got, "service-account");
      const st = await runCli(ws, ["status"]);
      assertSane(st, "status");
      assert.equal(st.code, 3, st.stdout);
      assert.match(st.stdout, /^access token: +expired/m);
      assert.doesNotMatch(st.stdout, /assumed/);
      const json = statusJson(await runCli(ws, ["status", "--json"]));
      assert.equal(json.access_token.valid, false);
      assert.equal(json.access_token.expiry_assumed, false);

      op.on("/token", () => ({
        body: { access_token: "renewed-token-2", token_type: "Bearer", expires_in: 300 },
      }));
      const grants = op.count("/token");
      const r = await runCli(ws, ["refresh", "--min-valid", "1m"]);
      assert.equal(r.code, 0, r.stderr);
      assert.doesNotMatch(r.stderr + r.stdout, /nothing to do/);
      assert.equal(op.count("/token"), grants + 1, "one grant: the expired token was renewed");
      assert.equal((await runCli(ws, ["status"])).code, 0);
    });
  }

  // openid-client checks expires_in (a number >= 0; a numeric string is read as its number).
  const lifetimes: { value: unknown; valid: boolean; expiresAt?: string }[] = [
    { value: 90.5, valid: true },
    { value: "300", valid: true },
    { value: 1e300, valid: true, expiresAt: "9999-12-31T23:59:59.000Z" },
    { value: 1e308, valid: true, expiresAt: "9999-12-31T23:59:59.000Z" },
  ];
  for (const l of lifetimes) {
    test(`${JSON.stringify(l.value)}: a stated lifetime, never default_token_lifetime`, async () => {
      op.on("/token", () => ({
        body: { access_token: "lifetime-token-3", token_type: "Bearer", expires_in: l.value },
      }));
      const ws = await workspace("service");
      const got = await runCli(ws, ["service-account"]);
      assert.equal(got.code, 0, got.stderr);
      assertSane(got, "service-account");
      const json = statusJson(await runCli(ws, ["status", "--json"]));
      assert.equal(json.access_token.valid, l.valid);
      assert.equal(json.access_token.expiry_assumed, false);
      if (l.expiresAt !== undefined) assert.equal(json.access_token.expires_at, l.expiresAt);
    });
  }

  for (const value of [-1, "soon", null]) {
    test(`${JSON.stringify(value)}: the answer is refused in one line, nothing is written`, async () => {
      op.on("/token", () => ({
        body: { access_token: "refused-token-4", token_type: "Bearer", expires_in: value },
      }));
      const ws = await workspace("service");
      const r = await runCli(ws, ["service-account"]);
      assertSane(r, "service-account");
      assert.equal(r.code, 1, r.stderr);
      assert.match(
        r.stderr,
        /^error: client credentials grant with .* failed: invalid response encountered$/m,
      );
      await assert.rejects(readFile(ws.netrcPath, "utf8"), "no netrc written");
    });
  }
});

describe("a provider's clock reading that is no date", () => {
  const farIat = (): string => jwt({ iat: 1e13, exp: Math.floor((Date.now() + 300_000) / 1000) });
  const cases: { name: string; token: () => string; headers: Record<string, string> }[] = [
    { name: "an access token iat of 1e13 s (no Date header)", token: farIat, headers: { date: "" } },
    { name: "an access token iat of 1e13 s (a Date header)", token: farIat, headers: {} },
    {
      name: "a Date header in year 275760",
      token: () => "opaque-token-5",
      headers: { date: "Sat, 13 Sep 275760 00:00:00 GMT" },
    },
  ];
  for (const c of cases) {
    test(`${c.name}: ignored as a clock reading; status and refresh tell the token's expiry`, async () => {
      op.on("/token", () => ({
        headers: c.headers,
        body: { access_token: c.token(), token_type: "Bearer", expires_in: 300 },
      }));
      const ws = await workspace("service");
      const got = await runCli(ws, ["service-account"]);
      assertSane(got, "service-account");
      assert.equal(got.code, 0, got.stderr);
      assert.match(got.stderr, /: valid, expires in 5m /);
      const st = await runCli(ws, ["status"]);
      assertSane(st, "status");
      assert.equal(st.code, 0, st.stdout);
      assert.match(st.stdout, /^access token: +valid, expires in 5m /m);
      assert.doesNotMatch(st.stdout, /^clock:/m);
      const json = statusJson(await runCli(ws, ["status", "--json"]));
      assert.equal(json.clock.skew_seconds, 0);
      assert.equal(json.clock.moved, false);
      const r = await runCli(ws, ["refresh", "--min-valid", "1m"]);
      assertSane(r, "refresh --min-valid");
      assert.equal(r.code, 0, r.stderr);
    });
  }

  test("stored by an older version, then the session ends: the session-ended error, not an internal one", async () => {
    const ws = await workspace("user");
    const now = Date.now();
    const store = await seedUser(ws, {
      refresh_token: "the-refresh-token-6",
      access_token: jwt({ iat: 1e13 }),
      access_token_expires_at: new Date(now - 60_000).toISOString(),
      clock: { offset_ms: Date.UTC(275760, 8, 13) - now, measured_at: new Date(now).toISOString() },
    });
    ws.secrets.add("the-refresh-token-6");
    op.on("/token", () => ({
      status: 400,
      body: { error: "invalid_grant", error_description: "Session not active" },
    }));
    const r = await runCli(ws, ["refresh"]);
    assertSane(r, "refresh");
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /^error: your session at .* expired or was revoked/m);
    const state = JSON.parse(await readFile(store.file, "utf8")) as TokenState;
    assert.ok(state.session_ended !== undefined, "the end of the session is recorded");
    assert.ok(Math.abs(Date.parse(state.session_ended.at) - now) < HOUR, state.session_ended.at);
    const st = await runCli(ws, ["status"]);
    assertSane(st, "status");
    assert.equal(st.code, 3, st.stdout);
    assert.match(st.stdout, /^access token: +expired 1m ago /m);
    assert.doesNotMatch(st.stdout, /^clock:/m);
  });
});

describe("no refresh token, and the clock moved", () => {
  test("refresh says the expiry is unknown, as status does, and exits 3", async () => {
    const ws = await workspace("user");
    // Issued two hours in the local future, and no measurement of the clock: only `iat` tells.
    const issued = Math.floor((Date.now() + 2 * HOUR) / 1000);
    await seedUser(ws, {
      access_token: jwt({ iat: issued, exp: issued + 300 }),
      access_token_expires_at: new Date((issued + 300) * 1000).toISOString(),
    });
    const st = await runCli(ws, ["status"]);
    assertSane(st, "status");
    assert.equal(st.code, 3, st.stdout);
    assert.match(st.stdout, /^access token: +unknown \(the clock moved/m);
    for (const args of [["refresh"], ["refresh", "--min-valid", "1m"]]) {
      const grants = op.count("/token");
      const r = await runCli(ws, args);
      assertSane(r, args.join(" "));
      assert.equal(r.code, 3, `${args.join(" ")}: ${r.stderr}`);
      assert.doesNotMatch(r.stdout + r.stderr, /expires in/, args.join(" "));
      assert.match(
        r.stderr,
        /^error: cannot tell whether the access token is still valid .*issues no refresh token/m,
      );
      assert.match(r.stderr, /^hint: run `nix-cache-login login`/m);
      assert.equal(op.count("/token"), grants, "nothing to renew with: no grant");
    }
  });
});
