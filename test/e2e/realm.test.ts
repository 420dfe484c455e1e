// Proves the Keycloak-shaped test realm (test/support/realm.ts) over real HTTP on 127.0.0.1.

import assert from "node:assert/strict";
import { createHash, createPublicKey, verify, type JsonWebKey } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import * as https from "node:https";
import * as net from "node:net";
import { after, before, describe, it } from "node:test";

import { startRealm, type Realm } from "../support/realm.ts";

const DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code";

type Json = Record<string, unknown>;

async function postForm(url: string, form: Record<string, string>, headers: Record<string, string> = {}) {
  const res = await fetch(url, { method: "POST", headers, body: new URLSearchParams(form) });
  return { status: res.status, body: (await res.json()) as Json };
}

function tokenEndpoint(realm: Realm): string {
  return `${realm.issuer}/protocol/openid-connect/token`;
}

function refresh(realm: Realm, refreshToken: unknown) {
  return postForm(tokenEndpoint(realm), {
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
  const jwks = (await (await fetch(`${realm.issuer}/protocol/openid-connect/certs`)).json()) as {
    keys: JsonWebKey[];
  };
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

// RFC 7636 appendix B's example pair.
const DEVICE_VERIFIER = "dBjftJeZ4CVP-mJ92K9ZpfNkA6PslI6YGaI5lFXr4tA";
const DEVICE_CHALLENGE = createHash("sha256").update(DEVICE_VERIFIER).digest("base64url");

function requestDeviceAuthorization(realm: Realm, pkce: Record<string, string>) {
  return postForm(`${realm.issuer}/protocol/openid-connect/auth/device`, {
    client_id: realm.publicClientId,
    scope: "openid",
    ...pkce,
  });
}

async function startDeviceAuthorization(realm: Realm): Promise<Json> {
  const res = await requestDeviceAuthorization(realm, {
    code_challenge: DEVICE_CHALLENGE,
    code_challenge_method: "S256",
  });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body;
}

function pollDevice(realm: Realm, deviceCode: unknown, verifier: string | null = DEVICE_VERIFIER) {
  return postForm(tokenEndpoint(realm), {
    grant_type: DEVICE_CODE_GRANT,
    device_code: String(deviceCode),
    client_id: realm.publicClientId,
    ...(verifier === null ? {} : { code_verifier: verifier }),
  });
}

describe("test realm (oidc-provider as Keycloak)", () => {
  let realm: Realm;
  let startMs = 0;

  before(async () => {
    const t0 = performance.now();
    realm = await startRealm({ accessTokenTTL: 120, refreshTokenTTL: 900 });
    startMs = performance.now() - t0;
  });
  after(async () => {
    await realm.stop();
  });

  it("starts quickly on loopback with an http issuer under /realms/test", () => {
    assert.match(realm.issuer, /^http:\/\/127\.0\.0\.1:\d+\/realms\/test$/);
    assert.equal(realm.issuer, `http://127.0.0.1:${realm.port}/realms/test`);
    assert.equal(
      realm.jwksUriTls,
      `https://127.0.0.1:${realm.tlsPort}/realms/test/protocol/openid-connect/certs`,
    );
    assert.ok(startMs < 5000, `startRealm took ${Math.round(startMs)} ms`);
  });

  it("publishes Keycloak's endpoint paths in discovery", async () => {
    const res = await fetch(`${realm.issuer}/.well-known/openid-configuration`);
    assert.equal(res.status, 200);
    const d = (await res.json()) as Json;
    const base = `${realm.issuer}/protocol/openid-connect`;
    assert.equal(d.issuer, realm.issuer);
    assert.equal(d.authorization_endpoint, `${base}/auth`);
    assert.equal(d.token_endpoint, `${base}/token`);
    assert.equal(d.jwks_uri, `${base}/certs`);
    assert.equal(d.revocation_endpoint, `${base}/revoke`);
    assert.equal(d.end_session_endpoint, `${base}/logout`);
    assert.equal(d.device_authorization_endpoint, `${base}/auth/device`);
    assert.equal(d.userinfo_endpoint, `${base}/userinfo`);
    assert.equal(d.introspection_endpoint, `${base}/token/introspect`);
    assert.deepEqual(d.code_challenge_methods_supported, ["S256"]);
    assert.ok((d.grant_types_supported as string[]).includes(DEVICE_CODE_GRANT));
    assert.ok(realm.countRequests("/.well-known/openid-configuration") >= 1);
  });

  it("issues JWT access tokens for the audience to the service client (basic and post)", async () => {
    const basic = Buffer.from(`${realm.serviceClientId}:${realm.serviceClientSecret}`).toString("base64");
    const viaBasic = await postForm(
      tokenEndpoint(realm),
      { grant_type: "client_credentials" },
      { authorization: `Basic ${basic}` },
    );
    assert.equal(viaBasic.status, 200, JSON.stringify(viaBasic.body));
    assert.equal(viaBasic.body.token_type, "Bearer");
    assert.equal(viaBasic.body.expires_in, 120);
    assert.equal(viaBasic.body.refresh_token, undefined, "service accounts get no refresh token");
    const claims = await assertSignedByRealm(realm, viaBasic.body.access_token);
    assert.equal(claims.aud, "urn:nix-cache");
    assert.equal(claims.iss, realm.issuer);
    assert.equal(claims.sub, realm.serviceClientId);
    assert.equal(Number(claims.exp) - Number(claims.iat), 120);

    const viaPost = await postForm(tokenEndpoint(realm), {
      grant_type: "client_credentials",
      client_id: realm.serviceClientId,
      client_secret: realm.serviceClientSecret,
    });
    assert.equal(viaPost.status, 200, JSON.stringify(viaPost.body));
    assert.equal(decodeJwt(viaPost.body.access_token).payload.aud, "urn:nix-cache");

    const wrong = await postForm(tokenEndpoint(realm), {
      grant_type: "client_credentials",
      client_id: realm.serviceClientId,
      client_secret: "not-the-secret",
    });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.body.error, "invalid_client");
  });

  it("signs a user in over HTTP and returns Keycloak-like tokens", async () => {
    const tokens = await realm.signInOverHttp();
    assert.equal(typeof tokens.refresh_token, "string");
    assert.equal(tokens.refresh_expires_in, 900);
    assert.equal(tokens.expires_in, 120);
    const at = await assertSignedByRealm(realm, tokens.access_token);
    assert.equal(at.aud, "urn:nix-cache");
    assert.equal(at.iss, realm.issuer);
    assert.equal(at.client_id, realm.publicClientId);
    const idToken = await assertSignedByRealm(realm, tokens.id_token);
    assert.equal(idToken.preferred_username, "alice");
    assert.equal(idToken.aud, realm.publicClientId);
    assert.notEqual(idToken.sub, "alice", "sub is a Keycloak-style id, not the username");
    assert.equal(at.sub, idToken.sub);

    // The login page must not pull anything from the internet (Google Fonts), and must check passwords.
    await assert.rejects(realm.signInOverHttp({ password: "wrong" }), /invalid username or password/);
    await assert.rejects(
      realm.signInOverHttp({ login: "mallory", password: "x" }),
      /invalid username or password/,
    );
  });

  it("serves the login form without the Google Fonts import", async () => {
    const auth = new URL(`${realm.issuer}/protocol/openid-connect/auth`);
    auth.search = new URLSearchParams({
      client_id: realm.publicClientId,
      response_type: "code",
      redirect_uri: "http://127.0.0.1:8123/callback",
      scope: "openid",
      code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
      code_challenge_method: "S256",
    }).toString();
    const start = await fetch(auth, { redirect: "manual" });
    assert.equal(start.status, 303);
    const cookie = start.headers
      .getSetCookie()
      .map((c) => c.split(";", 1)[0])
      .join("; ");
    const loginPage = await fetch(new URL(start.headers.get("location") ?? "", auth), {
      headers: { cookie },
    });
    const html = await loginPage.text();
    assert.equal(loginPage.status, 200);
    assert.match(html, /<input[^>]*name="login"/);
    assert.match(html, /<input[^>]*name="password"/);
    assert.doesNotMatch(html, /googleapis/);
  });

  it("rejects a redirect URI with another path, accepts any loopback port", async () => {
    const auth = (redirectUri: string) =>
      fetch(
        `${realm.issuer}/protocol/openid-connect/auth?${new URLSearchParams({
          client_id: realm.publicClientId,
          response_type: "code",
          redirect_uri: redirectUri,
          scope: "openid",
          code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
          code_challenge_method: "S256",
        }).toString()}`,
        { redirect: "manual" },
      );
    assert.equal((await auth("http://127.0.0.1:40123/callback")).status, 303);
    assert.equal((await auth("http://127.0.0.1:40123/other")).status, 400);
  });

  it("rotates refresh tokens and revokes the grant when an old one is reused", async () => {
    const first = await realm.signInOverHttp();
    const second = await refresh(realm, first.refresh_token);
    assert.equal(second.status, 200, JSON.stringify(second.body));
    assert.notEqual(second.body.refresh_token, first.refresh_token);
    assert.equal(second.body.refresh_expires_in, 900);
    assert.equal(decodeJwt(second.body.access_token).payload.aud, "urn:nix-cache");

    const reuse = await refresh(realm, first.refresh_token);
    assert.equal(reuse.status, 400);
    assert.equal(reuse.body.error, "invalid_grant");
    // Like Keycloak's "Revoke Refresh Token": the reuse also killed the newest token of that grant.
    const afterReuse = await refresh(realm, second.body.refresh_token);
    assert.equal(afterReuse.body.error, "invalid_grant");
  });

  it("serves the JWKS over https with the self-signed certificate", async () => {
    assert.ok(realm.caCertPath && realm.jwksUriTls);
    const ca = readFileSync(realm.caCertPath);
    realm.clearRequests();
    const res = await httpsGet(realm.jwksUriTls, ca);
    assert.equal(res.status, 200);
    const jwks = JSON.parse(res.body) as { keys: JsonWebKey[] };
    const { access_token } = await realm.signInOverHttp();
    assert.ok(jwks.keys.some((k) => k.kid === decodeJwt(access_token).header.kid));
    assert.ok(realm.requests.some((r) => r.tls && r.path === "/realms/test/protocol/openid-connect/certs"));
    // Without the CA it is a real, untrusted TLS server.
    await assert.rejects(httpsGet(realm.jwksUriTls), /self[- ]signed/i);
  });

  it("runs the device flow: pending, approved over HTTP, then tokens", async () => {
    const device = await startDeviceAuthorization(realm);
    assert.equal(device.verification_uri, `${realm.issuer}/device`);
    assert.equal(typeof device.user_code, "string");
    assert.equal(device.interval, undefined, "oidc-provider sends no interval unless deviceInterval is set");

    const pending = await pollDevice(realm, device.device_code);
    assert.equal(pending.status, 400);
    assert.equal(pending.body.error, "authorization_pending");

    await realm.approveDeviceOverHttp(String(device.user_code));
    const done = await pollDevice(realm, device.device_code);
    assert.equal(done.status, 200, JSON.stringify(done.body));
    assert.equal(typeof done.body.refresh_token, "string");
    assert.equal(done.body.refresh_expires_in, 900);
    assert.equal((await assertSignedByRealm(realm, done.body.access_token)).aud, "urn:nix-cache");
    assert.equal(decodeJwt(done.body.id_token).payload.preferred_username, "alice");

    const again = await pollDevice(realm, device.device_code);
    assert.equal(again.body.error, "invalid_grant", "a device code is good for one token response");
  });

  it("requires S256 PKCE on the device flow, as Keycloak does when the client has a PKCE method", async () => {
    const missing = await requestDeviceAuthorization(realm, {});
    assert.equal(missing.status, 400);
    assert.deepEqual(
      [missing.body.error, missing.body.error_description],
      ["invalid_request", "Missing parameter: code_challenge_method"],
    );
    const plain = await requestDeviceAuthorization(realm, {
      code_challenge: DEVICE_VERIFIER,
      code_challenge_method: "plain",
    });
    assert.equal(plain.body.error, "invalid_request");

    const device = await startDeviceAuthorization(realm);
    await realm.approveDeviceOverHttp(String(device.user_code));
    const noVerifier = await pollDevice(realm, device.device_code, null);
    assert.equal(noVerifier.body.error, "invalid_grant");
    const wrong = await pollDevice(realm, device.device_code, "x".repeat(43));
    assert.deepEqual(
      [wrong.body.error, wrong.body.error_description],
      ["invalid_grant", "PKCE verification failed: Code mismatch"],
    );
    const right = await pollDevice(realm, device.device_code);
    assert.equal(right.status, 200, JSON.stringify(right.body));
  });

  it("lets the user deny a device authorization", async () => {
    const device = await startDeviceAuthorization(realm);
    await realm.approveDeviceOverHttp(String(device.user_code), { deny: true });
    const denied = await pollDevice(realm, device.device_code);
    assert.equal(denied.status, 400);
    assert.equal(denied.body.error, "access_denied");
  });

  it("revokes a refresh token at the revocation endpoint, but not a JWT access token", async () => {
    const tokens = await realm.signInOverHttp();
    const revoke = async (token: unknown) => {
      const res = await fetch(`${realm.issuer}/protocol/openid-connect/revoke`, {
        method: "POST",
        body: new URLSearchParams({ token: String(token), client_id: realm.publicClientId }),
      });
      return { status: res.status, text: await res.text() };
    };
    const revokeAt = await revoke(tokens.access_token);
    assert.equal(revokeAt.status, 400);
    assert.equal((JSON.parse(revokeAt.text) as Json).error, "unsupported_token_type");
    assert.equal((await revoke(tokens.refresh_token)).status, 200);
    const after = await refresh(realm, tokens.refresh_token);
    assert.equal(after.body.error, "invalid_grant");
  });

  it("revokeAllSessions makes a later refresh fail with invalid_grant", async () => {
    const tokens = await realm.signInOverHttp();
    const before = await refresh(realm, tokens.refresh_token);
    assert.equal(before.status, 200);
    await realm.revokeAllSessions();
    const after = await refresh(realm, before.body.refresh_token);
    assert.equal(after.status, 400);
    assert.equal(after.body.error, "invalid_grant");
    // The realm keeps working for new sign-ins.
    assert.equal(typeof (await realm.signInOverHttp()).refresh_token, "string");
  });
});

describe("test realm options", () => {
  it("keeps the refresh token when rotation is off and adds interval when asked", async () => {
    const realm = await startRealm({ rotateRefreshToken: false, tls: false, deviceInterval: 1 });
    try {
      assert.equal(realm.tlsPort, undefined);
      assert.equal(realm.caCertPath, undefined);
      const tokens = await realm.signInOverHttp();
      const first = await refresh(realm, tokens.refresh_token);
      const second = await refresh(realm, tokens.refresh_token);
      assert.equal(first.status, 200);
      assert.equal(second.status, 200);
      assert.equal(second.body.refresh_token, tokens.refresh_token);
      assert.ok(
        Number(second.body.refresh_expires_in) <= 3600 && Number(second.body.refresh_expires_in) > 3500,
      );
      assert.equal((await startDeviceAuthorization(realm)).interval, 1);
    } finally {
      await realm.stop();
    }
  });

  it("expires refresh tokens after refreshTokenTTL and uses the configured users", async () => {
    const realm = await startRealm({ tls: false, refreshTokenTTL: 1, users: { bob: "hunter2" } });
    try {
      await assert.rejects(realm.signInOverHttp({ login: "alice", password: "alice-password" }));
      const tokens = await realm.signInOverHttp();
      assert.equal(decodeJwt(tokens.id_token).payload.preferred_username, "bob");
      assert.equal(tokens.refresh_expires_in, 1);
      await new Promise((resolve) => setTimeout(resolve, 2100));
      const expired = await refresh(realm, tokens.refresh_token);
      assert.equal(expired.status, 400);
      assert.equal(expired.body.error, "invalid_grant");
    } finally {
      await realm.stop();
    }
  });

  it("stop() frees the ports and removes the certificate", async () => {
    const realm = await startRealm();
    const { port, tlsPort, caCertPath } = realm;
    assert.ok(tlsPort && caCertPath && existsSync(caCertPath));
    // An open keep-alive connection must not hold the port.
    assert.equal((await fetch(`${realm.issuer}/.well-known/openid-configuration`)).status, 200);
    await realm.stop();
    assert.equal(existsSync(caCertPath), false);
    await assert.rejects(fetch(`${realm.issuer}/.well-known/openid-configuration`));
    for (const p of [port, tlsPort]) {
      await new Promise<void>((resolve, reject) => {
        const server = net.createServer();
        server.once("error", reject);
        server.listen(p, "127.0.0.1", () => server.close(() => resolve()));
      });
    }
  });
});
