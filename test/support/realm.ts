// A Keycloak-shaped OpenID Provider for end-to-end tests, the demo and the benchmark.
//
// It runs the npm `oidc-provider` (a certified OP) on 127.0.0.1 under Keycloak's URL layout, with the
// Keycloak behaviours the CLI depends on (see /work/shared/TESTBED.md, "oidc-provider as a Keycloak
// realm"). Where oidc-provider is kinder than Keycloak 26, the realm is made as strict as Keycloak
// (see "Keycloak strictness" below; each rule names its Keycloak source). Everything is in memory and
// per instance, so tests can run several realms side by side.
//
// Tests that need a signed-in user or an approved device code get them through oidc-provider's own
// models (Grant, RefreshToken, DeviceCode), not by scripting the login pages: the real browser
// sign-in is tested with Chromium (test/e2e/login.test.ts). Tests that need an expired token sign one
// with the realm's own key (signJwt / withClaims) or expire a stored one (expireRefreshToken).

import {
  createHash,
  createHmac,
  generateKeyPair,
  randomBytes,
  sign,
  timingSafeEqual,
  type JsonWebKey,
  type KeyObject,
} from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import * as http from "node:http";
import * as https from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { promisify } from "node:util";
import type { EventEmitter } from "node:events";
import type {
  Adapter,
  ErrorOut,
  AdapterPayload,
  Client,
  Configuration,
  KoaContextWithOIDC,
  default as OidcProvider,
} from "oidc-provider";
import { makeTlsCertificate } from "./tls.ts";

export interface RealmOptions {
  /** Seconds, default 300 (Keycloak's default access token lifespan). */
  accessTokenTTL?: number;
  /** Seconds, default 3600. */
  refreshTokenTTL?: number;
  /** Default true: reusing an old refresh token then ends the whole session, like Keycloak. */
  rotateRefreshToken?: boolean;
  /** Default true: also serve over https with a self-signed certificate (mod_auth_openidc needs it). */
  tls?: boolean;
  /** Default: random. */
  serviceClientSecret?: string;
  /** login -> password, default { alice: "alice-password" }. */
  users?: Record<string, string>;
  /**
   * If set, add `interval` (seconds) to device authorization responses, as Keycloak does (it sends 5).
   * oidc-provider itself sends none, so clients fall back to RFC 8628's 5 s.
   */
  deviceInterval?: number;
  /**
   * Keycloak offline tokens (scope offline_access): `refresh_expires_in: 0` and a refresh token JWT
   * without `exp` (Keycloak issues 8919, 27201, 48063). The realm still forgets them after
   * refreshTokenTTL; clients must treat the lifetime as unknown.
   */
  offlineTokens?: boolean;
  /**
   * The public client's registered redirect URIs, default `http://127.0.0.1/callback` (any port,
   * RFC 8252 section 7.3). Another path stands for a client registered for something else.
   */
  publicRedirectUris?: string[];
}

export interface RealmRequest {
  method: string;
  /** Path as received (with the /realms/test prefix), without the query. */
  path: string;
  /** Whether it came in on the TLS listener. */
  tls: boolean;
}

/** A token endpoint response, as JSON. */
export type TokenResponse = Record<string, unknown> & {
  access_token: string;
  refresh_token: string;
  id_token: string;
  expires_in: number;
  refresh_expires_in: number;
};

/**
 * What a test's fault hook does with one request (the chaos cases of issue 13): the provider stays
 * real, only the answer the client sees is held back or replaced.
 */
export type FaultAction =
  /** Answer normally. */
  | "pass"
  /** Leave the request unanswered until `until` resolves (the client may be killed meanwhile). */
  | { kind: "hold"; until: Promise<void> }
  /** Answer with this without letting the provider see the request (a proxy's 502, a redirect). */
  | { kind: "respond"; status: number; headers?: Record<string, string>; body?: string }
  /** Let the provider process the request for real, then answer with what `edit` makes of it. */
  | {
      kind: "replace";
      edit: (real: { status: number; body: string }) => {
        status: number;
        body: string;
        headers?: Record<string, string>;
      };
    };

export interface Realm {
  issuer: string;
  /** Test hook, called for every request; unset means every request passes. */
  fault: ((req: { method: string; path: string }) => FaultAction) | undefined;
  port: number;
  tlsPort?: number;
  tlsIssuerBase?: string;
  jwksUriTls?: string;
  caCertPath?: string;
  publicClientId: "nix-cache";
  serviceClientId: "nix-cache-server";
  serviceClientSecret: string;
  audience: "urn:nix-cache";
  requests: RealmRequest[];
  countRequests(pathSuffix?: string): number;
  clearRequests(): void;
  /**
   * A signed-in user's tokens for the public client: the grant and a refresh token are stored
   * through oidc-provider's models, then redeemed at the token endpoint (one real request), so the
   * answer is what a sign-in's code exchange gives.
   */
  signIn(opts?: { login?: string; scope?: string }): Promise<TokenResponse>;
  /** The user approves a pending device authorization (oidc-provider's DeviceCode model). */
  approveDevice(userCode: string, opts?: { login?: string }): Promise<void>;
  /** The user presses "No" on the device page: the poll answers access_denied. */
  denyDevice(userCode: string): Promise<void>;
  /** A JWT signed with the realm's own signing key (RS256, the realm's kid). */
  signJwt(payload: Record<string, unknown>, header?: Record<string, unknown>): string;
  /** A realm JWT with some claims replaced (e.g. `exp` in the past), signed again with the realm's key. */
  withClaims(token: string, claims: Record<string, unknown>): string;
  /** Makes a refresh token the realm issued expire now (the realm then answers "Token is not active"). */
  expireRefreshToken(refreshToken: string): Promise<void>;
  /** Ends every session, as an admin's "Sign out all active sessions" does. */
  revokeAllSessions(): Promise<void>;
  /**
   * Adds a `groups` claim of `bytes` characters to every access token issued from now on (0: none),
   * as a Keycloak realm with many groups or roles mapped into its tokens makes them large.
   */
  setAccessTokenPadding(bytes: number): void;
  stop(): Promise<void>;
}

const REALM_PATH = "/realms/test";
const PUBLIC_CLIENT_ID = "nix-cache";
const SERVICE_CLIENT_ID = "nix-cache-server";
const AUDIENCE = "urn:nix-cache";
const DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code";
// Keycloak's SSO Session Max default; a session (and so its refresh tokens) never outlives it.
const SSO_SESSION_MAX = 10 * 60 * 60;

// Keycloak's endpoint paths, relative to the realm.
const OIDC = "/protocol/openid-connect";
const ROUTES = {
  authorization: `${OIDC}/auth`,
  token: `${OIDC}/token`,
  jwks: `${OIDC}/certs`,
  revocation: `${OIDC}/revoke`,
  end_session: `${OIDC}/logout`,
  device_authorization: `${OIDC}/auth/device`,
  userinfo: `${OIDC}/userinfo`,
  introspection: `${OIDC}/token/introspect`,
  pushed_authorization_request: `${OIDC}/ext/par/request`,
  // Keycloak's user-facing device page is /realms/{realm}/device.
  code_verification: "/device",
} as const;

// devInteractions serves its login page at GET /interaction/:uid and takes the form at POST /interaction/:uid.
const INTERACTION_SUBMIT = /^\/interaction\/[^/]+$/;
const GOOGLE_FONTS_IMPORT = /@import url\(https:\/\/fonts\.googleapis\.com[^)]*\);?/g;

const debugEnabled = Boolean(process.env.REALM_DEBUG);
function debug(message: string): void {
  // stderr, so a demo's or a test's stdout stays clean even when debugging.
  if (debugEnabled) process.stderr.write(`[realm] ${message}\n`);
}

/**
 * The two warnings oidc-provider prints (lib/helpers/attention.js, through console.warn, in red on
 * a terminal) that say nothing to a user of this test realm or the demo, dropped so a demo on
 * Node 20 starts clean (issue 24), and nothing else:
 * - "Unsupported runtime": oidc-provider 9 wants Node 22 LTS or later (lib/index.js checks
 *   process.release.lts at import); Node 20 is in our `engines`, and the realm works on it
 *   (TESTBED.md; every e2e test runs it there).
 * - "devInteractions is enabled": the development login pages are what this realm is made of
 *   (the Chromium tests sign in on them); printed once per provider.
 */
const KNOWN_WARNINGS =
  // eslint-disable-next-line no-control-regex
  /^(?:\u001b\[[0-9;]*m)?oidc-provider WARNING: (?:Unsupported runtime\. |a quick start development-only feature devInteractions is enabled)/;

async function withoutKnownWarnings<T>(fn: () => T | Promise<T>): Promise<T> {
  const warn = console.warn;
  console.warn = (...args: unknown[]) => {
    if (typeof args[0] === "string" && KNOWN_WARNINGS.test(args[0])) return;
    warn(...args);
  };
  try {
    return await fn();
  } finally {
    console.warn = warn;
  }
}

type OidcProviderModule = typeof import("oidc-provider");
let oidcProviderModule: Promise<OidcProviderModule> | undefined;
function loadOidcProvider(): Promise<OidcProviderModule> {
  // Loaded on first use, so importing this file for its types prints nothing.
  oidcProviderModule ??= withoutKnownWarnings(() => import("oidc-provider"));
  return oidcProviderModule;
}

// ---------------------------------------------------------------------------------------------------
// Storage. Our own in-memory adapter rather than oidc-provider's: that one is an LRU capped at 1000
// entries (a benchmark would silently lose sessions), it prints a warning, and its store cannot be
// enumerated, which revokeAllSessions needs.

type StoredPayload = AdapterPayload;

class MemoryStore {
  private readonly models = new Map<string, Map<string, { payload: StoredPayload; expiresAt: number }>>();
  private writes = 0;

  private table(model: string): Map<string, { payload: StoredPayload; expiresAt: number }> {
    let table = this.models.get(model);
    if (!table) {
      table = new Map();
      this.models.set(model, table);
    }
    return table;
  }

  private live(model: string, id: string): StoredPayload | undefined {
    const table = this.table(model);
    const entry = table.get(id);
    if (!entry) return undefined;
    if (entry.expiresAt <= Date.now()) {
      table.delete(id);
      return undefined;
    }
    return entry.payload;
  }

  private findBy(model: string, match: (payload: StoredPayload) => boolean): StoredPayload | undefined {
    for (const [id, entry] of this.table(model)) {
      if (match(entry.payload)) return this.live(model, id);
    }
    return undefined;
  }

  private sweep(): void {
    const now = Date.now();
    for (const table of this.models.values()) {
      for (const [id, entry] of table) if (entry.expiresAt <= now) table.delete(id);
    }
  }

  /** Forget every session, grant and token, as if an admin signed all users out. */
  dropSessionsAndTokens(): void {
    for (const model of [
      "Session",
      "Grant",
      "AccessToken",
      "RefreshToken",
      "AuthorizationCode",
      "DeviceCode",
      "Interaction",
    ]) {
      this.models.delete(model);
    }
  }

  /** Sets a stored token's `exp` to the past; the entry stays, so the provider sees an expired token. */
  expire(model: string, id: string): boolean {
    const payload = this.live(model, id);
    if (payload === undefined) return false;
    payload.exp = Math.floor(Date.now() / 1000) - 1;
    return true;
  }

  /** Ends one session: the grant and every token and code issued under it. */
  revokeGrant(grantId: string): void {
    this.table("Grant").delete(grantId);
    for (const table of this.models.values()) {
      for (const [id, entry] of table) if (entry.payload.grantId === grantId) table.delete(id);
    }
  }

  adapter(model: string): Adapter {
    return {
      upsert: async (id: string, payload: StoredPayload, expiresIn?: number) => {
        // Sweeping now and then keeps a long benchmark from growing without bound.
        if (++this.writes % 512 === 0) this.sweep();
        const expiresAt = typeof expiresIn === "number" ? Date.now() + expiresIn * 1000 : Infinity;
        this.table(model).set(id, { payload, expiresAt });
      },
      find: async (id: string) => this.live(model, id),
      findByUid: async (uid: string) => this.findBy(model, (p) => p.uid === uid),
      findByUserCode: async (userCode: string) => this.findBy(model, (p) => p.userCode === userCode),
      consume: async (id: string) => {
        const payload = this.live(model, id);
        if (payload) payload.consumed = Math.floor(Date.now() / 1000);
      },
      destroy: async (id: string) => {
        this.table(model).delete(id);
      },
      revokeByGrantId: async (grantId: string) => {
        const table = this.table(model);
        for (const [id, entry] of table) if (entry.payload.grantId === grantId) table.delete(id);
      },
    };
  }
}

// ---------------------------------------------------------------------------------------------------
// Pages. oidc-provider's default device-flow, logout and error pages print a notice to stdout the first
// time they run and @import Google Fonts, so the realm brings its own plain ones (Keycloak-ish wording).

function escapeHtml(value: unknown): string {
  return String(value)
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");
}

function page(title: string, body: string): string {
  return `<!DOCTYPE html>
<html>
<head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>
<body>
<h1>${escapeHtml(title)}</h1>
${body}
</body>
</html>`;
}

function renderHtml(ctx: KoaContextWithOIDC, status: number, title: string, body: string): void {
  ctx.status = status;
  ctx.type = "html";
  ctx.body = page(title, body);
}

const pages = {
  async userCodeInput(
    ctx: KoaContextWithOIDC,
    form: string,
    out?: ErrorOut,
    err?: Error & { userCode?: string },
  ) {
    if (err) debug(`device page error: ${err.name}: ${err.message} ${JSON.stringify(out ?? {})}`);
    let message = "<p>Enter the code displayed on your device.</p>";
    if (err?.userCode || err?.name === "NoCodeError")
      message = '<p class="error">Invalid code, please try again.</p>';
    else if (err?.name === "AbortedError") message = '<p class="error">Device login was denied.</p>';
    else if (err) message = '<p class="error">There was an error processing your request.</p>';
    renderHtml(
      ctx,
      200,
      "Device Login",
      `${message}\n${form}\n<button type="submit" form="op.deviceInputForm">Submit</button>`,
    );
  },
  async userCodeConfirm(
    ctx: KoaContextWithOIDC,
    form: string,
    client: Client,
    _info: unknown,
    userCode: string,
  ) {
    renderHtml(
      ctx,
      200,
      "Device Login",
      `<p>Do you grant access to <strong>${escapeHtml(client.clientName ?? client.clientId)}</strong>?</p>
<p>Code: <code>${escapeHtml(userCode)}</code></p>
${form}
<button type="submit" form="op.deviceConfirmForm">Yes</button>
<button type="submit" form="op.deviceConfirmForm" name="abort" value="yes">No</button>`,
    );
  },
  async deviceSuccess(ctx: KoaContextWithOIDC) {
    renderHtml(ctx, 200, "Device Login Successful", "<p>You may now close this window.</p>");
  },
  async logout(ctx: KoaContextWithOIDC, form: string) {
    renderHtml(
      ctx,
      200,
      "Logging out",
      `<p>Do you want to log out?</p>
${form}
<button type="submit" form="op.logoutForm" name="logout" value="yes">Logout</button>
<button type="submit" form="op.logoutForm">Stay signed in</button>`,
    );
  },
  async postLogout(ctx: KoaContextWithOIDC) {
    renderHtml(ctx, 200, "You are logged out", "");
  },
  async error(ctx: KoaContextWithOIDC, out: Record<string, unknown>) {
    if (
      ctx.path === ROUTES.authorization &&
      (out.error === "invalid_client" || out.error === "invalid_redirect_uri")
    ) {
      // Keycloak does not redirect for an unknown client or an unregistered redirect URI: it shows
      // an HTTP 400 page saying "Client not found." or "Invalid parameter: redirect_uri"
      // (AuthorizationEndpointChecker.checkClient / checkRedirectUri, with Messages.CLIENT_NOT_FOUND
      // and Messages.INVALID_PARAMETER). oidc-provider answers 400 too, in its own words.
      ctx.status = 400;
      ctx.type = "html";
      ctx.body = page(
        "We are sorry...",
        `<p id="kc-error-message">${out.error === "invalid_client" ? "Client not found." : "Invalid parameter: redirect_uri"}</p>`,
      );
      return;
    }
    const lines = Object.entries(out).map(
      ([k, v]) => `<p><strong>${escapeHtml(k)}</strong>: ${escapeHtml(v)}</p>`,
    );
    // oidc-provider has already set the error status; keep it.
    ctx.type = "html";
    ctx.body = page("We are sorry...", lines.join("\n"));
  },
};

// ---------------------------------------------------------------------------------------------------
// Keys and certificate.

async function makeSigningKey(): Promise<{ key: KeyObject; jwk: JsonWebKey & { kid: string } }> {
  const { privateKey } = await promisify(generateKeyPair)("rsa", { modulusLength: 2048 });
  const jwk = privateKey.export({ format: "jwk" });
  const kid = createHash("sha256").update(String(jwk.n)).digest("base64url").slice(0, 16);
  // RS256, as Keycloak signs by default; ID tokens default to it too. The realm keeps the key, so
  // tests can sign tokens of their own with it (expired ones, say).
  return { key: privateKey, jwk: { ...jwk, kid, use: "sig", alg: "RS256" } };
}

function listen(server: http.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    // Loopback only, always: see TESTBED.md.
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

function close(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    // close() alone waits for keep-alive sockets to go idle and time out; the port must be free now.
    server.closeAllConnections();
  });
}

// ---------------------------------------------------------------------------------------------------
// Keycloak strictness. oidc-provider is kinder than Keycloak 26 in a few places the CLI meets at real
// sites; these rules make the realm refuse what Keycloak refuses. They need the request's form before
// oidc-provider parses it, so requests to the token, device authorization and revocation endpoints are
// read here and handed on as a fresh stream with the same headers.

/** The form bodies these endpoints take are small; Keycloak's limit is larger, oidc-provider's is 56 KiB. */
const FORM_LIMIT = 56 * 1024;

async function readBody(req: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > FORM_LIMIT) throw new Error("request body too large");
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** req again, with `body` as its (already read) body. */
function withBody(req: http.IncomingMessage, body: string): http.IncomingMessage {
  const bytes = Buffer.from(body, "utf8");
  const headers = { ...req.headers, "content-length": String(bytes.length) };
  return Object.assign(Readable.from([bytes]), {
    headers,
    rawHeaders: req.rawHeaders,
    method: req.method,
    url: req.url,
    originalUrl: (req as http.IncomingMessage & { originalUrl?: string }).originalUrl,
    httpVersion: req.httpVersion,
    httpVersionMajor: req.httpVersionMajor,
    httpVersionMinor: req.httpVersionMinor,
    socket: req.socket,
    connection: req.socket,
    complete: true,
    aborted: false,
  }) as unknown as http.IncomingMessage;
}

/** Keycloak's token endpoint errors: JSON with `error` and `error_description`, nothing else. */
function oauthError(res: http.ServerResponse, status: number, error: string, description: string): void {
  res
    .writeHead(status, { "content-type": "application/json", "cache-control": "no-store" })
    .end(JSON.stringify({ error, error_description: description }));
}

/**
 * Keycloak's invalid_grant descriptions for what oidc-provider reports as error_detail
 * (Keycloak's TokenManager.refreshAccessToken / validateToken; TESTBED.md lists them).
 */
const KEYCLOAK_INVALID_GRANT: Record<string, string> = {
  // The session (grant) was ended: logout, admin sign-out, reuse detection.
  "refresh token not found": "Session not active",
  "grant not found": "Session not active",
  // Past the refresh token's `exp`.
  "refresh token is expired": "Token is not active",
  // An old refresh token after rotation ("Revoke Refresh Token" on): TokenManager.validateTokenReuse.
  "refresh token already used": "Stale token",
  "client mismatch": "Invalid refresh token. Token client and authorized client don't match",
};

function s256(verifier: string): string {
  return createHash("sha256").update(verifier).digest("base64url");
}

// ---------------------------------------------------------------------------------------------------
// Refresh tokens as JWTs. Keycloak's refresh tokens are JWTs (HS512 with a realm secret, `typ`
// "Refresh" or "Offline") with `exp`, except offline tokens, which may have none. oidc-provider's are
// opaque: the realm hands out a JWT whose `jti` is oidc-provider's handle and takes it back on the way
// in. Deterministic (same stored token, same JWT), so a refresh that keeps the token returns it as is.

class RefreshJwt {
  private readonly secret = randomBytes(64);
  constructor(private readonly issuer: string) {}

  wrap(
    handle: string,
    stored: {
      iat: number;
      exp?: number | undefined;
      accountId: string;
      clientId?: string | undefined;
      scope?: string | undefined;
    },
    offline: boolean,
  ): string {
    const header = { alg: "HS512", typ: "JWT" };
    const payload: Record<string, unknown> = { iat: stored.iat };
    if (!offline && stored.exp !== undefined) payload.exp = stored.exp;
    Object.assign(payload, {
      jti: handle,
      iss: this.issuer,
      aud: this.issuer,
      sub: stored.accountId,
      typ: offline ? "Offline" : "Refresh",
      azp: stored.clientId,
      scope: stored.scope,
    });
    const input = `${b64json(header)}.${b64json(payload)}`;
    return `${input}.${this.mac(input)}`;
  }

  /** The handle inside a JWT this realm issued, or undefined for anything else. */
  unwrap(token: string): string | undefined {
    const parts = token.split(".");
    if (parts.length !== 3) return undefined;
    const [h = "", p = "", sig = ""] = parts;
    const want = Buffer.from(this.mac(`${h}.${p}`));
    const got = Buffer.from(sig);
    if (want.length !== got.length || !timingSafeEqual(want, got)) return undefined;
    const payload = JSON.parse(Buffer.from(p, "base64url").toString()) as { jti?: unknown };
    return typeof payload.jti === "string" ? payload.jti : undefined;
  }

  private mac(input: string): string {
    return createHmac("sha512", this.secret).update(input).digest("base64url");
  }
}

function b64json(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString("base64url");
}

// ---------------------------------------------------------------------------------------------------

// Keycloak's subjects are UUIDs distinct from the username; a derived one keeps clients honest about
// using preferred_username for display, and stays the same across restarts of the realm.
function subjectFor(login: string): string {
  const h = createHash("sha256").update(`nix-cache-login test realm:${login}`).digest("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

async function applyFault(
  action: Exclude<FaultAction, "pass">,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  port: number | undefined,
  bypass: string,
): Promise<void> {
  const body = await readBody(req);
  if (action.kind === "respond") {
    res.writeHead(action.status, action.headers ?? {}).end(action.body ?? "");
    return;
  }
  if (port === undefined) throw new Error("faults apply to the plain http listener only");
  if (action.kind === "hold") {
    const closed = new Promise<void>((resolve) => res.once("close", resolve));
    await Promise.race([action.until, closed]);
    if (res.destroyed || res.writableEnded) return;
  }
  // Replay the request to the provider, on our own listener (marked, so it passes untouched).
  const real = await new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>(
    (resolve, reject) => {
      const inner = http.request(
        {
          host: "127.0.0.1",
          port,
          method: req.method,
          path: req.url,
          headers: { ...req.headers, "x-realm-replay": bypass },
        },
        (r) => {
          const chunks: Buffer[] = [];
          r.on("data", (c: Buffer) => chunks.push(c));
          r.on("end", () =>
            resolve({
              status: r.statusCode ?? 500,
              headers: r.headers,
              body: Buffer.concat(chunks).toString(),
            }),
          );
          r.on("error", reject);
        },
      );
      inner.on("error", reject);
      inner.end(body);
    },
  );
  if (action.kind === "hold") {
    const headers = { ...real.headers };
    delete headers["content-length"];
    delete headers["transfer-encoding"];
    res.writeHead(real.status, headers as http.OutgoingHttpHeaders).end(real.body);
    return;
  }
  const out = action.edit({ status: real.status, body: real.body });
  res.writeHead(out.status, { "content-type": "application/json", ...(out.headers ?? {}) }).end(out.body);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

const STRICT_PATHS = new Set<string>([ROUTES.token, ROUTES.device_authorization, ROUTES.revocation]);

export async function startRealm(opts: RealmOptions = {}): Promise<Realm> {
  const accessTokenTTL = opts.accessTokenTTL ?? 300;
  const refreshTokenTTL = opts.refreshTokenTTL ?? 3600;
  const sessionTTL = Math.max(refreshTokenTTL, SSO_SESSION_MAX);
  const rotateRefreshToken = opts.rotateRefreshToken ?? true;
  const offline = opts.offlineTokens ?? false;
  const useTls = opts.tls ?? true;
  const serviceClientSecret = opts.serviceClientSecret ?? randomBytes(24).toString("base64url");
  const users = opts.users ?? { alice: "alice-password" };
  let accessTokenPadding = 0;
  const loginBySubject = new Map(Object.keys(users).map((login) => [subjectFor(login), login]));

  const requests: RealmRequest[] = [];
  let dispatch: ((req: http.IncomingMessage, res: http.ServerResponse) => void) | undefined;
  // Set once the provider exists; the strict layer below needs it to end sessions.
  let strict:
    ((req: http.IncomingMessage, res: http.ServerResponse, path: string) => Promise<void>) | undefined;
  let realmRef: Realm | undefined;
  // Marks the realm's own replay of a request whose answer a fault replaces: not recorded twice.
  const bypass = randomBytes(16).toString("hex");

  const handler =
    (tls: boolean) =>
    (req: http.IncomingMessage, res: http.ServerResponse): void => {
      const url = req.url ?? "/";
      const path = url.split("?", 1)[0] ?? "/";
      const replay = req.headers["x-realm-replay"] === bypass;
      if (!replay) requests.push({ method: req.method ?? "GET", path, tls });
      const action = replay ? "pass" : (realmRef?.fault?.({ method: req.method ?? "GET", path }) ?? "pass");
      if (action !== "pass") {
        void applyFault(action, req, res, tls ? undefined : realmRef?.port, bypass).catch(() =>
          res.destroy(),
        );
        return;
      }
      if (debugEnabled)
        res.once("finish", () => debug(`${tls ? "https" : "http"} ${req.method} ${path} ${res.statusCode}`));
      if (!dispatch || !strict || !(path === REALM_PATH || path.startsWith(`${REALM_PATH}/`))) {
        res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
        return;
      }
      // The provider routes on the path without the prefix, and derives the prefix for the URLs it
      // prints from originalUrl (the convention of Express's mounting).
      (req as http.IncomingMessage & { originalUrl?: string }).originalUrl = url;
      req.url = url.slice(REALM_PATH.length) || "/";
      const inner = path.slice(REALM_PATH.length);
      if (req.method === "POST" && STRICT_PATHS.has(inner)) {
        strict(req, res, inner).catch((err: unknown) => {
          debug(`strict layer: ${String(err)}`);
          if (!res.headersSent) oauthError(res, 400, "invalid_request", "Invalid request");
          else res.destroy();
        });
        return;
      }
      dispatch(req, res);
    };

  const tempDir = useTls ? await mkdtemp(join(tmpdir(), "nix-cache-realm-")) : undefined;
  const servers: http.Server[] = [];
  try {
    const httpServer = http.createServer(handler(false));
    servers.push(httpServer);
    const [mod, signing, port, tlsSetup] = await Promise.all([
      loadOidcProvider(),
      makeSigningKey(),
      listen(httpServer),
      tempDir
        ? makeTlsCertificate(tempDir).then(async ({ keyPath, certPath }) => {
            const [key, cert] = await Promise.all([readFile(keyPath), readFile(certPath)]);
            const server = https.createServer({ key, cert }, handler(true));
            servers.push(server);
            return { certPath, port: await listen(server) };
          })
        : undefined,
    ]);

    const issuer = `http://127.0.0.1:${port}${REALM_PATH}`;
    const store = new MemoryStore();
    const refreshJwt = new RefreshJwt(issuer);

    const policy = mod.interactionPolicy.base();
    // Keycloak asks no consent by default; oidc-provider always would for native clients.
    policy.get("consent")?.checks.remove("native_client_prompt");

    const ownsToken = async (
      _ctx: KoaContextWithOIDC,
      client: Client,
      token: { clientId?: string | undefined },
    ) => token.clientId === client.clientId;

    const configuration: Configuration = {
      adapter: (model: string) => store.adapter(model),
      jwks: { keys: [signing.jwk] },
      cookies: { keys: [randomBytes(32).toString("base64url")] },
      clients: [
        {
          client_id: PUBLIC_CLIENT_ID,
          application_type: "native",
          token_endpoint_auth_method: "none",
          // With application_type native any port on this loopback URI is accepted (RFC 8252 section 7.3).
          redirect_uris: opts.publicRedirectUris ?? ["http://127.0.0.1/callback"],
          grant_types: ["authorization_code", "refresh_token", DEVICE_CODE_GRANT],
          response_types: ["code"],
        },
        {
          client_id: SERVICE_CLIENT_ID,
          client_secret: serviceClientSecret,
          // oidc-provider also accepts client_secret_post for a client registered with basic.
          token_endpoint_auth_method: "client_secret_basic",
          grant_types: ["client_credentials"],
          response_types: [],
          redirect_uris: [],
        },
      ],
      // Keycloak's default client scopes put preferred_username in every ID token, even for scope=openid.
      claims: { openid: ["sub", "preferred_username"], profile: ["preferred_username"], email: ["email"] },
      scopes: ["openid", "offline_access", "profile", "email"],
      routes: ROUTES,
      // Only the code flow; the default also enables implicit and hybrid response types.
      responseTypes: ["code"],
      pkce: { required: () => true },
      clientBasedCORS: () => false,
      interactions: { policy },
      features: {
        devInteractions: { enabled: true },
        clientCredentials: { enabled: true },
        deviceFlow: {
          enabled: true,
          userCodeInputSource: pages.userCodeInput,
          userCodeConfirmSource: pages.userCodeConfirm,
          successSource: pages.deviceSuccess,
        },
        revocation: { enabled: true, allowedPolicy: ownsToken },
        // @types/oidc-provider 9.12 types `enabled: true` only together with jwtIntrospection.
        introspection: { enabled: true, allowedPolicy: ownsToken } as unknown as { enabled?: false },
        rpInitiatedLogout: {
          enabled: true,
          logoutSource: pages.logout,
          postLogoutSuccessSource: pages.postLogout,
        },
        resourceIndicators: {
          enabled: true,
          defaultResource: async (_ctx, _client, oneOf) => oneOf ?? AUDIENCE,
          // Refresh and code exchanges keep the resource granted at authorization, so they also get JWTs.
          useGrantedResource: async () => true,
          getResourceServerInfo: async (_ctx, indicator) => {
            if (indicator !== AUDIENCE) throw new mod.errors.InvalidTarget();
            return {
              scope: "openid profile email",
              audience: AUDIENCE,
              accessTokenTTL,
              accessTokenFormat: "jwt",
            };
          },
        },
      },
      // Keycloak issues refresh tokens without offline_access; oidc-provider would only with it.
      issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed("refresh_token"),
      rotateRefreshToken,
      loadExistingGrant: async (ctx) => {
        const oidc = ctx.oidc;
        const accountId = oidc.session?.accountId;
        const clientId = oidc.client?.clientId;
        if (!accountId || !clientId) return undefined;
        const grantId = oidc.result?.consent?.grantId ?? oidc.session?.grantIdFor(clientId);
        const { Grant } = provider;
        const grant = (grantId ? await Grant.find(grantId) : undefined) ?? new Grant({ accountId, clientId });
        // Grant whatever is asked for, so the consent prompt never has anything missing.
        grant.addOIDCScope([...oidc.requestParamOIDCScopes].join(" "));
        grant.addOIDCClaims([...oidc.requestParamClaims]);
        for (const indicator of Object.keys(oidc.resourceServers ?? {})) {
          grant.addResourceScope(indicator, [...oidc.requestParamScopes].join(" "));
        }
        await grant.save();
        return grant;
      },
      findAccount: async (_ctx, sub) => {
        const login = loginBySubject.get(sub);
        if (login === undefined) return undefined;
        return { accountId: sub, claims: async () => ({ sub, preferred_username: login }) };
      },
      // Keycloak access tokens name the user too; service account tokens here carry only sub (the client).
      extraTokenClaims: async (_ctx, token) => {
        const accountId = (token as { accountId?: string }).accountId;
        const login = accountId === undefined ? undefined : loginBySubject.get(accountId);
        const claims: Record<string, unknown> = {};
        if (login !== undefined) claims.preferred_username = login;
        if (accessTokenPadding > 0) claims.groups = "g".repeat(accessTokenPadding);
        return Object.keys(claims).length === 0 ? undefined : claims;
      },
      ttl: {
        AccessToken: accessTokenTTL,
        ClientCredentials: accessTokenTTL,
        IdToken: accessTokenTTL,
        RefreshToken: refreshTokenTTL,
        AuthorizationCode: 60,
        DeviceCode: 600,
        Interaction: 3600,
        Session: sessionTTL,
        Grant: sessionTTL,
      },
      renderError: pages.error as unknown as Configuration["renderError"],
    };

    // devInteractions prints one warning to stderr per provider; there is no switch for it.
    const provider: OidcProvider = await withoutKnownWarnings(() => new mod.default(issuer, configuration));

    // What oidc-provider said went wrong (error_detail), for Keycloak's wording of the error.
    const errorDetail = new WeakMap<object, string>();
    provider.on("grant.error", (ctx: KoaContextWithOIDC, err: { error_detail?: string }) => {
      if (err.error_detail !== undefined) errorDetail.set(ctx.req, err.error_detail);
    });
    if (debugEnabled) {
      for (const event of [
        "server_error",
        "grant.error",
        "authorization.error",
        "revocation.error",
        "end_session.error",
        "introspection.error",
        "code_verification.error",
      ]) {
        (provider as unknown as EventEmitter).on(event, (_ctx: unknown, err: unknown) => {
          const e = err as {
            error?: string;
            error_description?: string;
            error_detail?: string;
            message?: string;
          };
          debug(`${event}: ${e.error ?? e.message} ${e.error_description ?? ""} (${e.error_detail ?? ""})`);
        });
      }
    }

    // PKCE challenges of device authorizations, by device code.
    const deviceChallenges = new Map<string, string>();
    const pendingChallenge = new WeakMap<object, string>();
    // Refresh requests in progress, by refresh token handle.
    const inFlight = new Map<string, Promise<void>>();

    const endSessionOf = async (handle: string): Promise<void> => {
      const token = await provider.RefreshToken.find(handle, { ignoreExpiration: true });
      if (token?.grantId !== undefined) store.revokeGrant(token.grantId);
    };

    strict = async (req, res, path) => {
      const form = new URLSearchParams(await readBody(req));
      // Our refresh token JWTs stand for oidc-provider's handles.
      for (const key of ["refresh_token", "token"]) {
        const value = form.get(key);
        const handle = value === null ? undefined : refreshJwt.unwrap(value);
        if (handle !== undefined) form.set(key, handle);
      }
      const next = withBody(req, form.toString());

      if (path === ROUTES.device_authorization && form.get("client_id") === PUBLIC_CLIENT_ID) {
        // Keycloak requires PKCE on the device authorization request when the client has a PKCE
        // method set (Advanced settings), as docs/provider-setup.md tells admins to set it: Keycloak PR 9711
        // (DeviceEndpoint), int128/kubelogin issue 1470 is a client that met it.
        const method = form.get("code_challenge_method");
        const challenge = form.get("code_challenge");
        if (method === null)
          return oauthError(res, 400, "invalid_request", "Missing parameter: code_challenge_method");
        if (method !== "S256")
          return oauthError(res, 400, "invalid_request", "Invalid parameter: code_challenge_method");
        if (challenge === null || !/^[A-Za-z0-9_-]{43,128}$/.test(challenge))
          return oauthError(res, 400, "invalid_request", "Invalid parameter: code_challenge");
        pendingChallenge.set(next, challenge);
      }

      if (path === ROUTES.token && form.get("grant_type") === DEVICE_CODE_GRANT) {
        // ... and the code_verifier on the token request (Keycloak PR 9711, DeviceGrantType).
        const challenge = deviceChallenges.get(form.get("device_code") ?? "");
        const verifier = form.get("code_verifier");
        if (challenge !== undefined && verifier === null)
          return oauthError(res, 400, "invalid_grant", "PKCE code verifier not specified");
        if (challenge !== undefined && verifier !== null && s256(verifier) !== challenge)
          return oauthError(res, 400, "invalid_grant", "PKCE verification failed: Code mismatch");
      }

      if (path === ROUTES.token && form.get("grant_type") === "refresh_token" && rotateRefreshToken) {
        // With "Revoke Refresh Token" on, a refresh token is good for one use (max reuse 0), and a
        // reuse ends the session (Keycloak PR 8130); that holds for two requests that race with the
        // same token too (Keycloak PR 46054): the second is refused and the session ends.
        const handle = form.get("refresh_token") ?? "";
        const running = inFlight.get(handle);
        if (running !== undefined) {
          await running;
          await endSessionOf(handle);
          return oauthError(res, 400, "invalid_grant", "Maximum allowed refresh token reuse exceeded");
        }
        const done = new Promise<void>((resolve) => res.once("close", () => resolve()));
        inFlight.set(handle, done);
        void done.then(() => inFlight.delete(handle));
      }

      dispatch?.(next, res);
    };

    provider.use(async (koaCtx, next) => {
      const ctx = koaCtx as unknown as KoaContextWithOIDC;
      // devInteractions accepts any login and ignores the password; check it against the configured users.
      if (ctx.method === "POST" && INTERACTION_SUBMIT.test(ctx.path)) {
        const form = new URLSearchParams(await readBody(ctx.req));
        const login = form.get("login") ?? "";
        if (form.get("prompt") !== "login") {
          renderHtml(ctx, 400, "Unsupported interaction", "<p>Only the login prompt is expected here.</p>");
          return;
        }
        if (!Object.hasOwn(users, login) || users[login] !== form.get("password")) {
          renderHtml(
            ctx,
            401,
            "Sign in to test",
            `<p class="error">Invalid username or password.</p><p><a href="${escapeHtml(REALM_PATH + ctx.path)}">Try again</a></p>`,
          );
          return;
        }
        try {
          await provider.interactionFinished(
            ctx.req,
            ctx.res,
            { login: { accountId: subjectFor(login) } },
            { mergeWithLastSubmission: false },
          );
          ctx.respond = false;
        } catch (err) {
          renderHtml(ctx, 400, "Login session expired", `<p>${escapeHtml((err as Error).message)}</p>`);
        }
        return;
      }

      // Seconds, as in the tokens: a token issued by this request reports its whole lifetime even
      // when the clock ticks over while the request runs.
      const started = Math.floor(Date.now() / 1000);
      await next();

      if (typeof ctx.body === "string" && ctx.body.includes("fonts.googleapis.com")) {
        // Keep a browser under test on loopback.
        ctx.body = ctx.body.replace(GOOGLE_FONTS_IMPORT, "");
      }
      const body = ctx.body;
      if (!isRecord(body)) return;
      if (ctx.path === ROUTES.token && ctx.status >= 400 && typeof body.error === "string") {
        // Keycloak answers token errors with error and error_description only, in its own words.
        const detail = errorDetail.get(ctx.req);
        const description =
          (body.error === "invalid_grant" && detail !== undefined
            ? KEYCLOAK_INVALID_GRANT[detail]
            : undefined) ?? body.error_description;
        ctx.body = { error: body.error, error_description: description };
        return;
      }
      if (ctx.status !== 200) return;
      if (ctx.path === ROUTES.token && typeof body.refresh_token === "string") {
        // Keycloak reports the refresh token's lifetime (0 for offline tokens); take it from the
        // stored token, so a refresh that keeps the old token reports what is left of it.
        const handle = body.refresh_token;
        const stored = await provider.RefreshToken.find(handle);
        if (stored?.exp !== undefined) {
          ctx.body = {
            ...body,
            refresh_token: refreshJwt.wrap(handle, stored, offline),
            refresh_expires_in: offline
              ? 0
              : Math.max(0, stored.exp - Math.max(started, stored.iat ?? started)),
          };
        }
      } else if (ctx.path === ROUTES.device_authorization) {
        const challenge = pendingChallenge.get(ctx.req);
        if (challenge !== undefined && typeof body.device_code === "string")
          deviceChallenges.set(body.device_code, challenge);
        if (opts.deviceInterval !== undefined) ctx.body = { ...body, interval: opts.deviceInterval };
      }
    });

    dispatch = provider.callback();

    const loginOrFirst = (login: string | undefined): string => {
      const name = login ?? firstLogin(users);
      if (!Object.hasOwn(users, name)) throw new Error(`no user ${name} in this realm`);
      return name;
    };

    const signJwt = (payload: Record<string, unknown>, header: Record<string, unknown> = {}): string => {
      const input = `${b64json({ alg: "RS256", typ: "JWT", kid: signing.jwk.kid, ...header })}.${b64json(payload)}`;
      return `${input}.${sign("sha256", Buffer.from(input), signing.key).toString("base64url")}`;
    };

    const realm: Realm = {
      issuer,
      fault: undefined,
      port,
      publicClientId: PUBLIC_CLIENT_ID,
      serviceClientId: SERVICE_CLIENT_ID,
      serviceClientSecret,
      audience: AUDIENCE,
      requests,
      countRequests: (pathSuffix) =>
        pathSuffix === undefined
          ? requests.length
          : requests.filter((r) => r.path.endsWith(pathSuffix)).length,
      clearRequests: () => {
        requests.length = 0;
      },
      async signIn(o = {}) {
        const login = loginOrFirst(o.login);
        const scope = o.scope ?? "openid";
        const accountId = subjectFor(login);
        const client = await provider.Client.find(PUBLIC_CLIENT_ID);
        if (client === undefined) throw new Error("the public client is missing");
        const grant = new provider.Grant({ accountId, clientId: PUBLIC_CLIENT_ID });
        grant.addOIDCScope(scope);
        grant.addResourceScope(AUDIENCE, scope);
        const grantId = await grant.save();
        const seeded = new provider.RefreshToken({
          client,
          accountId,
          grantId,
          gty: "authorization_code",
          scope,
          resource: AUDIENCE,
          authTime: Math.floor(Date.now() / 1000),
        });
        const res = await fetch(`${issuer}${ROUTES.token}`, {
          method: "POST",
          body: new URLSearchParams({
            grant_type: "refresh_token",
            refresh_token: await seeded.save(),
            client_id: PUBLIC_CLIENT_ID,
          }),
        });
        const json = (await res.json()) as TokenResponse;
        if (!res.ok) throw new Error(`seeded sign-in failed (${res.status}): ${JSON.stringify(json)}`);
        return json;
      },
      async approveDevice(userCode, o = {}) {
        const code = await provider.DeviceCode.findByUserCode(normalizeUserCode(userCode));
        if (code === undefined) throw new Error(`no pending device authorization with user code ${userCode}`);
        const accountId = subjectFor(loginOrFirst(o.login));
        const scope = typeof code.params?.scope === "string" ? code.params.scope : "openid";
        const grant = new provider.Grant({ accountId, clientId: code.clientId });
        grant.addOIDCScope(scope);
        grant.addResourceScope(AUDIENCE, scope);
        Object.assign(code, {
          accountId,
          authTime: Math.floor(Date.now() / 1000),
          grantId: await grant.save(),
          scope,
          resource: AUDIENCE,
        });
        await code.save();
      },
      async denyDevice(userCode) {
        const code = await provider.DeviceCode.findByUserCode(normalizeUserCode(userCode));
        if (code === undefined) throw new Error(`no pending device authorization with user code ${userCode}`);
        // What oidc-provider's device page stores when the user presses "No".
        Object.assign(code, { error: "access_denied", errorDescription: "End-User aborted interaction" });
        await code.save();
      },
      signJwt,
      withClaims(token, claims) {
        const [h = "", p = ""] = token.split(".");
        const header = JSON.parse(Buffer.from(h, "base64url").toString()) as Record<string, unknown>;
        const payload = JSON.parse(Buffer.from(p, "base64url").toString()) as Record<string, unknown>;
        if (header.kid !== signing.jwk.kid) throw new Error("withClaims: not a token of this realm");
        return signJwt({ ...payload, ...claims }, header);
      },
      async expireRefreshToken(refreshToken) {
        const handle = refreshJwt.unwrap(refreshToken) ?? refreshToken;
        if (!store.expire("RefreshToken", handle))
          throw new Error("expireRefreshToken: no such refresh token");
      },
      revokeAllSessions: async () => {
        store.dropSessionsAndTokens();
      },
      setAccessTokenPadding: (bytes) => {
        accessTokenPadding = bytes;
      },
      stop: async () => {
        dispatch = undefined;
        await Promise.all(servers.map(close));
        if (tempDir) await rm(tempDir, { recursive: true, force: true });
      },
    };
    realmRef = realm;
    if (tlsSetup) {
      realm.tlsPort = tlsSetup.port;
      realm.tlsIssuerBase = `https://127.0.0.1:${tlsSetup.port}${REALM_PATH}`;
      realm.jwksUriTls = `${realm.tlsIssuerBase}${ROUTES.jwks}`;
      realm.caCertPath = tlsSetup.certPath;
    }
    return realm;
  } catch (err) {
    await Promise.all(servers.filter((s) => s.listening).map(close));
    if (tempDir) await rm(tempDir, { recursive: true, force: true });
    throw err;
  }
}

function firstLogin(users: Record<string, string>): string {
  const login = Object.keys(users)[0];
  if (login === undefined) throw new Error("realm has no users");
  return login;
}

/** oidc-provider stores user codes without the mask's dash ("ABCD-EFGH" is kept as "ABCDEFGH"). */
function normalizeUserCode(userCode: string): string {
  return userCode.toUpperCase().replace(/[^A-Z0-9]/g, "");
}
