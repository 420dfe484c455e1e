// The Keycloak-shaped test realm (test/support/realm.ts) over real HTTP on 127.0.0.1: a smoke test of
// its shape, and each Keycloak strictness it adds to oidc-provider, tested against the realm itself.
// One realm for the file (each test makes its own sessions); the options get one more realm.

import assert from "node:assert/strict";
import { createHash, createPublicKey, randomBytes, verify, type JsonWebKey } from "node:crypto";
import { readFileSync } from "node:fs";
import * as https from "node:https";
import { after, before, describe, it } from "node:test";

import { startRealm, type Realm } from "../support/realm.ts";

const DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code";

type Json = Record<string, unknown>;

async function postForm(url: string, form: Record<string, string>, headers: Record<string, string> = {}) {
  const res = await fetch(url, { method: "POST", headers, body: new URLSearchParams(form) });
  return { status: res.status, body: (await res.json()) as Json };
}

const endpoint = (realm: Realm, name: string) => `${realm.issuer}/protocol/openid-connect/${name}`;

function refresh(realm: Realm, refreshToken: unknown) {
  return postForm(endpoint(realm, "token"), {
    grant_type: "refresh_token",
    refresh_token: String(refreshToken),
    client_id: realm.publicClientId,
  });
}

function decodeJwt(token: unknown): { header: Json; payload: Json; signingInput: string; signature: Buffer } {
  assert.equal(typeof token, "string");
  const [header = "", payload = "", signature = ""] = String(token).split(".");
  return {
    header: JSON.parse(Buffer.from(header, "base64url").toString()) as Json,
    payload: JSON.parse(Buffer.from(payload, "base64url").toString()) as Json,
    signingInput: `${header}.${payload}`,
    signature: Buffer.from(signature, "base64url"),
  };
}

async function assertSignedByRealm(realm: Realm, token: unknown): Promise<Json> {
  const jwt = decodeJwt(token);
  const jwks = (await (await fetch(endpoint(realm, "certs"))).json()) as { keys: JsonWebKey[] };
  const jwk = jwks.keys.find((k) => k.kid === jwt.header.kid);
  assert.ok(jwk, `no JWKS key for kid ${String(jwt.header.kid)}`);
  assert.equal(jwt.header.alg, "RS256");
  const key = createPublicKey({ key: jwk, format: "jwk" });
  assert.ok(verify("sha256", Buffer.from(jwt.signingInput), key, jwt.signature), "signature does not verify");
  return jwt.payload;
}

function httpsGet(url: string, ca?: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { ca, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
  });
}

function pkce() {
  const verifier = randomBytes(32).toString("base64url");
  return { verifier, challenge: createHash("sha256").update(verifier).digest("base64url") };
}

async function startDevice(realm: Realm, extra: Record<string, string>) {
  return postForm(endpoint(realm, "auth/device"), {
    client_id: realm.publicClientId,
    scope: "openid",
    ...extra,
  });
}

function pollDevice(realm: Realm, deviceCode: unknown, extra: Record<string, string> = {}) {
  return postForm(endpoint(realm, "token"), {
    grant_type: DEVICE_CODE_GRANT,
    device_code: String(deviceCode),
    client_id: realm.publicClientId,
    ...extra,
  });
}

let realm: Realm;
before(async () => {
  realm = await startRealm({ accessTokenTTL: 120, refreshTokenTTL: 900 });
});
after(async () => {
  await realm?.stop();
});

describe("test realm (oidc-provider as Keycloak)", () => {
  it("publishes Keycloak's endpoint paths in discovery, and JWKS over https", async () => {
    assert.equal(realm.issuer, `http://127.0.0.1:${realm.port}/realms/test`);
    const d = (await (await fetch(`${realm.issuer}/.well-known/openid-configuration`)).json()) as Json;
    const base = `${realm.issuer}/protocol/openid-connect`;
    assert.deepEqual(
      [d.issuer, d.authorization_endpoint, d.token_endpoint, d.jwks_uri, d.revocation_endpoint],
      [realm.issuer, `${base}/auth`, `${base}/token`, `${base}/certs`, `${base}/revoke`],
    );
    assert.equal(d.end_session_endpoint, `${base}/logout`);
    assert.equal(d.device_authorization_endpoint, `${base}/auth/device`);
    assert.deepEqual(d.code_challenge_methods_supported, ["S256"]);

    assert.ok(realm.caCertPath && realm.jwksUriTls);
    assert.equal(
      realm.jwksUriTls,
      `https://127.0.0.1:${realm.tlsPort}/realms/test/protocol/openid-connect/certs`,
    );
    const tls = await httpsGet(realm.jwksUriTls, readFileSync(realm.caCertPath));
    assert.equal(tls.status, 200);
    const kids = (JSON.parse(tls.body) as { keys: JsonWebKey[] }).keys.map((k) => k.kid);
    assert.ok(kids.includes(decodeJwt(realm.signJwt({})).header.kid as string));
    await assert.rejects(httpsGet(realm.jwksUriTls), /self[- ]signed/i, "a real, untrusted TLS server");
  });

  it("service client: JWT access tokens for the audience, no refresh token, wrong secret refused", async () => {
    const basic = Buffer.from(`${realm.serviceClientId}:${realm.serviceClientSecret}`).toString("base64");
    const ok = await postForm(
      endpoint(realm, "token"),
      { grant_type: "client_credentials" },
      { authorization: `Basic ${basic}` },
    );
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal(ok.body.expires_in, 120);
    assert.equal(ok.body.refresh_token, undefined);
    const claims = await assertSignedByRealm(realm, ok.body.access_token);
    assert.deepEqual(
      [claims.aud, claims.iss, claims.sub],
      [realm.audience, realm.issuer, realm.serviceClientId],
    );
    const wrong = await postForm(endpoint(realm, "token"), {
      grant_type: "client_credentials",
      client_id: realm.serviceClientId,
      client_secret: "not-the-secret",
    });
    assert.deepEqual([wrong.status, wrong.body.error], [401, "invalid_client"]);
  });

  it("signIn: Keycloak-like tokens, refresh token a JWT with exp, subject not the username", async () => {
    const tokens = await realm.signIn();
    assert.equal(tokens.expires_in, 120);
    assert.equal(tokens.refresh_expires_in, 900);
    const at = await assertSignedByRealm(realm, tokens.access_token);
    assert.deepEqual([at.aud, at.iss, at.client_id], [realm.audience, realm.issuer, realm.publicClientId]);
    const idToken = await assertSignedByRealm(realm, tokens.id_token);
    assert.equal(idToken.preferred_username, "alice");
    assert.notEqual(idToken.sub, "alice");
    const rt = decodeJwt(tokens.refresh_token).payload;
    assert.equal(rt.typ, "Refresh");
    assert.equal(Number(rt.exp) - Number(rt.iat), 900);
    await assert.rejects(realm.signIn({ login: "mallory" }), /no user mallory/);
  });

  it("the login page checks the password and pulls nothing from the internet", async () => {
    const { challenge } = pkce();
    const auth = new URL(endpoint(realm, "auth"));
    auth.search = new URLSearchParams({
      client_id: realm.publicClientId,
      response_type: "code",
      redirect_uri: "http://127.0.0.1:8123/callback",
      scope: "openid",
      code_challenge: challenge,
      code_challenge_method: "S256",
    }).toString();
    const start = await fetch(auth, { redirect: "manual" });
    assert.equal(start.status, 303);
    const cookie = start.headers
      .getSetCookie()
      .map((c) => c.split(";", 1)[0])
      .join("; ");
    const loginUrl = new URL(start.headers.get("location") ?? "", auth);
    const page = await fetch(loginUrl, { headers: { cookie } });
    const html = await page.text();
    assert.equal(page.status, 200);
    assert.match(html, /<input[^>]*name="login"/);
    assert.doesNotMatch(html, /googleapis/);
    const wrong = await fetch(loginUrl, {
      method: "POST",
      headers: { cookie },
      body: new URLSearchParams({ prompt: "login", login: "alice", password: "wrong" }),
      redirect: "manual",
    });
    assert.equal(wrong.status, 401);
    assert.match(await wrong.text(), /Invalid username or password/);
    // A redirect URI with another path is refused; any loopback port is fine (above).
    auth.searchParams.set("redirect_uri", "http://127.0.0.1:8123/other");
    assert.equal((await fetch(auth, { redirect: "manual" })).status, 400);
  });

  it("device grant without PKCE is refused as Keycloak does; with S256 it works end to end", async () => {
    const none = await startDevice(realm, {});
    assert.deepEqual(
      [none.status, none.body],
      [400, { error: "invalid_request", error_description: "Missing parameter: code_challenge_method" }],
    );
    const plain = await startDevice(realm, {
      code_challenge: "x".repeat(43),
      code_challenge_method: "plain",
    });
    assert.equal(plain.body.error, "invalid_request");

    const { verifier, challenge } = pkce();
    const device = await startDevice(realm, { code_challenge: challenge, code_challenge_method: "S256" });
    assert.equal(device.status, 200, JSON.stringify(device.body));
    assert.equal(device.body.verification_uri, `${realm.issuer}/device`);
    assert.equal(
      device.body.interval,
      undefined,
      "oidc-provider sends no interval unless deviceInterval is set",
    );
    const pending = await pollDevice(realm, device.body.device_code, { code_verifier: verifier });
    assert.equal(pending.body.error, "authorization_pending");

    await realm.approveDevice(String(device.body.user_code));
    const noVerifier = await pollDevice(realm, device.body.device_code);
    assert.deepEqual(noVerifier.body, {
      error: "invalid_grant",
      error_description: "PKCE code verifier not specified",
    });
    const badVerifier = await pollDevice(realm, device.body.device_code, { code_verifier: pkce().verifier });
    assert.deepEqual(badVerifier.body, {
      error: "invalid_grant",
      error_description: "PKCE verification failed: Code mismatch",
    });
    const done = await pollDevice(realm, device.body.device_code, { code_verifier: verifier });
    assert.equal(done.status, 200, JSON.stringify(done.body));
    assert.equal(done.body.refresh_expires_in, 900);
    assert.equal((await assertSignedByRealm(realm, done.body.access_token)).aud, realm.audience);
    assert.equal(decodeJwt(done.body.id_token).payload.preferred_username, "alice");
    const again = await pollDevice(realm, device.body.device_code, { code_verifier: verifier });
    assert.equal(again.body.error, "invalid_grant", "a device code is good for one token response");

    const denied = await startDevice(realm, { code_challenge: challenge, code_challenge_method: "S256" });
    await realm.denyDevice(String(denied.body.user_code));
    const answer = await pollDevice(realm, denied.body.device_code, { code_verifier: verifier });
    assert.deepEqual([answer.status, answer.body.error], [400, "access_denied"]);
  });

  it("a reused refresh token is refused (Stale token) and ends the session", async () => {
    const first = await realm.signIn();
    const second = await refresh(realm, first.refresh_token);
    assert.equal(second.status, 200, JSON.stringify(second.body));
    assert.notEqual(second.body.refresh_token, first.refresh_token);
    const reuse = await refresh(realm, first.refresh_token);
    assert.deepEqual(
      [reuse.status, reuse.body],
      [400, { error: "invalid_grant", error_description: "Stale token" }],
    );
    const newest = await refresh(realm, second.body.refresh_token);
    assert.deepEqual(newest.body, { error: "invalid_grant", error_description: "Session not active" });
  });

  it("two refreshes racing with the same token: one is refused and the session ends", async () => {
    const tokens = await realm.signIn();
    const [a, b] = await Promise.all([
      refresh(realm, tokens.refresh_token),
      refresh(realm, tokens.refresh_token),
    ]);
    const statuses = [a.status, b.status].sort();
    assert.deepEqual(statuses, [200, 400]);
    const refused = a.status === 400 ? a : b;
    const won = a.status === 200 ? a : b;
    assert.deepEqual(refused.body, {
      error: "invalid_grant",
      error_description: "Maximum allowed refresh token reuse exceeded",
    });
    assert.equal((await refresh(realm, won.body.refresh_token)).body.error_description, "Session not active");
  });

  it("an expired refresh token: Token is not active; revokeAllSessions: Session not active", async () => {
    const tokens = await realm.signIn();
    await realm.expireRefreshToken(tokens.refresh_token);
    assert.deepEqual((await refresh(realm, tokens.refresh_token)).body, {
      error: "invalid_grant",
      error_description: "Token is not active",
    });
    const other = await realm.signIn();
    await realm.revokeAllSessions();
    assert.equal((await refresh(realm, other.refresh_token)).body.error_description, "Session not active");
    assert.equal(typeof (await realm.signIn()).refresh_token, "string", "new sign-ins still work");
  });

  it("revokes a refresh token at the revocation endpoint, but not a JWT access token", async () => {
    const tokens = await realm.signIn();
    const revoke = (token: string) =>
      fetch(endpoint(realm, "revoke"), {
        method: "POST",
        body: new URLSearchParams({ token, client_id: realm.publicClientId }),
      });
    const at = await revoke(tokens.access_token);
    assert.equal(at.status, 400);
    assert.equal(((await at.json()) as Json).error, "unsupported_token_type");
    assert.equal((await revoke(tokens.refresh_token)).status, 200);
    assert.equal((await refresh(realm, tokens.refresh_token)).body.error, "invalid_grant");
  });

  it("signJwt / withClaims sign with the realm's key (for expired tokens in tests)", async () => {
    const { access_token } = await realm.signIn();
    const past = Math.floor(Date.now() / 1000) - 60;
    const expired = realm.withClaims(access_token, { exp: past });
    const claims = await assertSignedByRealm(realm, expired);
    assert.equal(claims.exp, past);
    assert.equal(claims.aud, realm.audience);
  });
});

describe("the realm prints nothing of its dependency's", () => {
  it("no oidc-provider warning on stderr (the demo's first lines on Node 20, issue 24)", async () => {
    const { spawn } = await import("node:child_process");
    const tsx = import.meta.resolve("tsx");
    const realmModule = new URL("../support/realm.ts", import.meta.url).href;
    const child = spawn(
      process.execPath,
      [
        "--import",
        tsx,
        "--input-type=module",
        "-e",
        `const { startRealm } = await import(${JSON.stringify(realmModule)}); const r = await startRealm({ tls: false }); await r.stop();`,
      ],
      { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NODE_NO_WARNINGS: undefined } },
    );
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.stdout.resume();
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    assert.equal(code, 0, stderr);
    assert.equal(stderr, "", "nothing on stderr");
  });
});

describe("test realm options", () => {
  it("offline tokens, no rotation, no TLS, other users, device interval", async () => {
    const other = await startRealm({
      offlineTokens: true,
      rotateRefreshToken: false,
      tls: false,
      users: { bob: "hunter2" },
      deviceInterval: 1,
    });
    try {
      assert.equal(other.tlsPort, undefined);
      await assert.rejects(other.signIn({ login: "alice" }), /no user alice/);
      const tokens = await other.signIn();
      assert.equal(decodeJwt(tokens.id_token).payload.preferred_username, "bob");
      // Keycloak offline tokens: refresh_expires_in 0 and a refresh token JWT without exp.
      assert.equal(tokens.refresh_expires_in, 0);
      const rt = decodeJwt(tokens.refresh_token).payload;
      assert.equal(rt.typ, "Offline");
      assert.equal(rt.exp, undefined);
      // Without rotation the same refresh token comes back, and may be used again.
      const first = await refresh(other, tokens.refresh_token);
      const second = await refresh(other, tokens.refresh_token);
      assert.deepEqual([first.status, second.status], [200, 200]);
      assert.equal(second.body.refresh_token, tokens.refresh_token);
      const { challenge } = pkce();
      const device = await startDevice(other, { code_challenge: challenge, code_challenge_method: "S256" });
      assert.equal(device.body.interval, 1);
    } finally {
      await other.stop();
    }
  });
});
