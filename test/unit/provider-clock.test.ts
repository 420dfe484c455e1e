import assert from "node:assert/strict";
import { test } from "node:test";
import { clockRecord, describeSkew, providerTime } from "../../src/core/provider-clock.ts";
import { keptDiscovery } from "../../src/oidc/discovery-fields.ts";
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
