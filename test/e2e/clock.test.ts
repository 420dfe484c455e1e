/**
 * Issue 20: a wrong clock never costs a session. The built CLI runs under libfaketime (its clock
 * alone 2 h ahead or behind) against the Keycloak-shaped realm (refresh tokens rotate, reuse ends
 * the session, as Keycloak's "Revoke Refresh Token") and the real cache (Apache +
 * mod_auth_openidc, which checks `exp` with no leeway). The same cases run against the real
 * Keycloak in keycloak.test.ts.
 */
import assert from "node:assert/strict";
import { after, before, describe } from "node:test";
import type { ChildProcess } from "node:child_process";
import { test } from "node:test";
import {
  clockSkewCases,
  grantsIn,
  printClockRows,
  requireFaketime,
  type ClockBed,
} from "../support/clock-cases.ts";
import { runCli, withClock } from "../support/cli.ts";
import { curl, expireToken, HOST, seedUserSession, startBed, type Bed } from "../support/protected-bed.ts";

let bed: Bed;

before(async () => {
  requireFaketime();
  bed = await startBed({ accessTokenTTL: 300, refreshTokenTTL: 3600, rotateRefreshToken: true });
});

after(async () => {
  printClockRows();
  await bed?.stop();
});

const fastRealm = (): ClockBed => ({
  name: "fast realm",
  tokenPath: "/protocol/openid-connect/token",
  async userWorkspace(o = {}) {
    const ws = await bed.workspace(bed, { user: true });
    await seedUserSession(ws, bed);
    if (o.renewed === false) return ws;
    const r = await runCli(ws, ["refresh"]);
    assert.equal(r.code, 0, r.stderr);
    return ws;
  },
  serviceWorkspace: () => bed.workspace(bed),
  async assertCacheAccepts(ws, what) {
    const c = await curl(`${bed.cache.url}/nix-cache-info`, ws.netrcPath);
    assert.equal(c.status, 200, `${what}: the cache answered ${c.status} (${c.wwwAuthenticate})`);
  },
});

describe(`${HOST}: the fast realm with a shifted clock`, () => {
  clockSkewCases(fastRealm);

  test("+2h: a device sign-in's ID token is checked on the provider's clock", async () => {
    requireFaketime();
    const b = fastRealm();
    const ws = await bed.workspace(bed, { user: true });
    let child!: ChildProcess;
    const login = runCli(ws, ["login", "--device", "--verbose"], {
      ...withClock("+2h"),
      onSpawn: (c) => (child = c),
    });
    let seen = "";
    const code = await new Promise<string>((resolve, reject) => {
      child.stderr?.on("data", (d: Buffer | string) => {
        seen += String(d);
        const m = /user_code=([A-Za-z0-9-]+)/.exec(seen);
        if (m?.[1] !== undefined) resolve(m[1]);
      });
      child.on("close", () => reject(new Error(`login ended before showing a code: ${seen}`)));
    });
    await bed.realm.approveDevice(code);
    const r = await login;
    assert.equal(r.code, 0, r.stderr);
    // The discovery answer's Date header set the clock before the grant: told on the provider's clock.
    assert.match(r.stderr, /^ {2}access token: {2}valid, expires in [45]m /m);
    await b.assertCacheAccepts(ws, "device sign-in with the clock 2 h ahead");
    const st = await runCli(ws, ["status"]);
    assert.equal(st.code, 0, st.stdout);
  });

  test("a clock 2 h behind all along: an access token that really expired is renewed, not called valid", async () => {
    requireFaketime();
    const b = fastRealm();
    const ws = await b.userWorkspace();
    // The last renewal, too, ran with the clock behind: the stored offset matches, nothing moved.
    const first = await runCli(ws, ["refresh"], withClock("-2h"));
    assert.equal(first.code, 0, first.stderr);
    await expireToken(ws, bed, bed.realm.publicClientId);
    const status = await runCli(ws, ["status"], withClock("-2h"));
    assert.equal(status.code, 3, status.stdout);
    assert.match(status.stdout, /access token:\s+expired/);
    const r = await runCli(ws, ["refresh", "--min-valid", "1m", "--verbose"], withClock("-2h"));
    assert.equal(r.code, 0, r.stderr);
    assert.equal(grantsIn(r, b.tokenPath), 1, "expired on the provider's clock: renewed");
    await b.assertCacheAccepts(ws, "after the renewal with the clock behind");
  });
});
