import assert from "node:assert/strict";
import { test } from "node:test";
import { clockRecord, describeSkew, providerTime } from "../../src/core/provider-clock.ts";
import { offsetFromDate, offsetFromIat } from "../../src/oidc/token-answer.ts";
import { keptDiscovery } from "../../src/oidc/discovery.ts";
import type { TokenState } from "../../src/store/state.ts";

const base: TokenState = { version: 1, issuer: "https://sso.example/realms/x", client_id: "c", mode: "user" };
const HOUR = 3600_000;

function jwt(claims: Record<string, unknown>): string {
  return `e30.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.sig`;
}

test("providerTime: without a measurement the local clock is all there is", () => {
  const now = new Date();
  const t = providerTime(base, now);
  assert.equal(t.basis, "local");
  assert.equal(t.now.getTime(), now.getTime());
  assert.equal(t.moved, false);
});

test("providerTime: in the same boot, time since boot finds the provider's time after the clock moved", () => {
  const real = new Date();
  // Measured with the real clock: the provider runs 90 s ahead.
  const state = { ...base, clock: clockRecord(90_000, real) };
  for (const shift of [2 * HOUR, -2 * HOUR]) {
    const t = providerTime(state, new Date(real.getTime() + shift));
    assert.equal(t.basis, "boot");
    assert.equal(t.moved, true);
    assert.ok(Math.abs(t.now.getTime() - (real.getTime() + 90_000)) < 5_000, t.now.toISOString());
    assert.ok(Math.abs(t.skewMs - (90_000 - shift)) < 5_000);
  }
  const still = providerTime(state, new Date());
  assert.equal(still.moved, false);
});

test("providerTime: another boot (or no uptime) adds the stored offset; a token from the future says the clock went back", () => {
  const now = new Date();
  const record = { offset_ms: 30_000, measured_at: now.toISOString(), boot_id: "another-boot", uptime_ms: 1 };
  const t = providerTime({ ...base, clock: record }, now);
  assert.equal(t.basis, "offset");
  assert.equal(t.now.getTime(), now.getTime() + 30_000);
  const issued = Math.floor((now.getTime() + 2 * HOUR) / 1000);
  const back = providerTime({ ...base, clock: record, access_token: jwt({ iat: issued }) }, now);
  assert.equal(back.basis, "issued");
  assert.equal(back.moved, true);
  assert.equal(back.now.getTime(), issued * 1000);
});

test("providerTime: an iat or a stored offset that gives no plausible date is no clock reading", () => {
  const now = new Date();
  // An `iat` of 1e13 seconds is year 318857, beyond what a Date holds.
  const farIat = providerTime({ ...base, access_token: jwt({ iat: 1e13 }) }, now);
  assert.equal(farIat.basis, "local");
  assert.equal(farIat.moved, false);
  assert.equal(farIat.now.getTime(), now.getTime());
  assert.equal(farIat.skewMs, 0);
  // What an older version stored for a `Date:` in year 275760 (the largest Date), in this boot and another.
  const offset = Date.UTC(275760, 8, 13) - now.getTime();
  for (const record of [
    clockRecord(offset, now),
    { offset_ms: offset, measured_at: now.toISOString(), boot_id: "another-boot", uptime_ms: 1 },
    { offset_ms: 1e20, measured_at: now.toISOString() },
    { offset_ms: -now.getTime(), measured_at: now.toISOString() },
  ]) {
    const state = { ...base, clock: record, access_token: jwt({ iat: 1e13 }) };
    const t = providerTime(state, now);
    assert.equal(t.basis, "local", JSON.stringify(record));
    assert.equal(t.now.getTime(), now.getTime());
    assert.ok(Number.isFinite(t.skewMs));
    assert.doesNotThrow(() => t.now.toISOString());
  }
  // A plausible one still counts, and a plausible iat from the future still says the clock moved.
  assert.equal(providerTime({ ...base, clock: clockRecord(90_000, now) }, now).skewMs >= 90_000, true);
  const issued = Math.floor((now.getTime() + 2 * HOUR) / 1000);
  assert.equal(providerTime({ ...base, access_token: jwt({ iat: issued }) }, now).basis, "issued");
});

test("clock readings from an answer: an implausible Date or iat is none", () => {
  const now = new Date();
  assert.equal(offsetFromDate(Date.parse("Sat, 13 Sep 275760 00:00:00 GMT"), now), undefined);
  assert.equal(offsetFromDate(Number.NaN, now), undefined);
  assert.equal(offsetFromDate(0, now), undefined);
  assert.equal(offsetFromDate(now.getTime() + HOUR, now), HOUR + 500);
  assert.equal(offsetFromIat(jwt({ iat: 1e13 }), now), undefined);
  assert.equal(offsetFromIat(jwt({ iat: -1 }), now), undefined);
  assert.equal(offsetFromIat(jwt({ iat: (now.getTime() + HOUR) / 1000 }), now), HOUR + 500);
  assert.equal(offsetFromDate(Date.UTC(9999, 11, 31), now), Date.UTC(9999, 11, 31) + 500 - now.getTime());
  assert.equal(offsetFromDate(Date.UTC(10000, 0, 1), now), undefined);
});

test("describeSkew: minutes, and which way", () => {
  assert.equal(describeSkew(-2 * HOUR), "about 120 minutes ahead of the provider's clock");
  assert.equal(describeSkew(61_000), "about 1 minute behind the provider's clock");
});

test("keptDiscovery keeps only the fields the tool uses, each within bounds", () => {
  const kept = keptDiscovery({
    issuer: "https://sso.example/realms/x",
    token_endpoint: "https://sso.example/t",
    op_policy_uri: "https://sso.example/policy",
    jwks_uri: `https://sso.example/${"k".repeat(5000)}`,
    grant_types_supported: ["refresh_token"],
    token_endpoint_auth_methods_supported: Array.from({ length: 1000 }, (_, i) => `m${i}`),
    require_pushed_authorization_requests: true,
  });
  assert.deepEqual(kept, {
    issuer: "https://sso.example/realms/x",
    token_endpoint: "https://sso.example/t",
    require_pushed_authorization_requests: true,
    grant_types_supported: ["refresh_token"],
  });
});
