// A Keycloak-shaped OpenID Provider for end-to-end tests, the demo and the benchmark.
//
// It runs the npm `oidc-provider` (a certified OP) on 127.0.0.1 under Keycloak's URL layout, with the
// Keycloak behaviours the CLI depends on (see /work/shared/TESTBED.md, "oidc-provider as a Keycloak
// realm"). Everything is in memory and per instance, so tests can run several realms side by side.

import { execFile } from "node:child_process";
import { createHash, generateKeyPair, randomBytes, type JsonWebKey } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import * as http from "node:http";
import * as https from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

export interface RealmOptions {
  /** Seconds, default 300 (Keycloak's default access token lifespan). */
  accessTokenTTL?: number;
  /** Seconds, default 3600. */
  refreshTokenTTL?: number;
  /** Default true: reusing an old refresh token then revokes the whole grant, like Keycloak. */
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
}

export interface RealmRequest {
  method: string;
  /** Path as received (with the /realms/test prefix), without the query. */
  path: string;
  /** Date.now() when the request arrived. */
  at: number;
  /** Whether it came in on the TLS listener. */
  tls: boolean;
}

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
  signInOverHttp(opts?: {
    login?: string;
    password?: string;
    scope?: string;
  }): Promise<Record<string, unknown>>;
  approveDeviceOverHttp(
    userCode: string,
    opts?: { login?: string; password?: string; deny?: boolean },
  ): Promise<void>;
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

// ---------------------------------------------------------------------------------------------------
// The part of oidc-provider's API used here. The package ships no type declarations, so it is loaded
// through a non-literal specifier and described by these minimal interfaces.

interface KoaContext {
  method: string;
  path: string;
  status: number;
  body: unknown;
  type: string;
  respond: boolean;
  req: http.IncomingMessage;
  res: http.ServerResponse;
  request: { body?: unknown };
  oidc: OidcContext;
}
type KoaMiddleware = (ctx: KoaContext, next: () => Promise<void>) => Promise<void>;

interface ClientLike {
  clientId: string;
  clientName?: string;
  clientAuthMethod: string;
  grantTypeAllowed(grantType: string): boolean;
}

interface OidcContext {
  client?: ClientLike;
  session: { accountId?: string; grantIdFor(clientId: string): string | undefined };
  result?: { consent?: { grantId?: string } };
  requestParamOIDCScopes: Set<string>;
  requestParamClaims: Set<string>;
  requestParamScopes: Set<string>;
  resourceServers: Record<string, unknown>;
}

interface GrantLike {
  addOIDCScope(scope: string): void;
  addOIDCClaims(claims: string[]): void;
  addResourceScope(indicator: string, scope: string): void;
  save(): Promise<string>;
}

interface ProviderLike {
  callback(): (req: http.IncomingMessage, res: http.ServerResponse) => void;
  use(middleware: KoaMiddleware): void;
  on(event: string, listener: (...args: unknown[]) => void): void;
  interactionFinished(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    result: Record<string, unknown>,
    options: { mergeWithLastSubmission: boolean },
  ): Promise<void>;
  RefreshToken: { find(value: string): Promise<{ exp?: number; iat?: number } | undefined> };
  Grant: {
    new (fields: { accountId: string; clientId: string }): GrantLike;
    find(id: string): Promise<GrantLike | undefined>;
  };
}

interface PromptPolicy extends Array<unknown> {
  get(name: string): { checks: { remove(name: string): void } } | undefined;
}

interface OidcProviderModule {
  default: new (issuer: string, configuration: Record<string, unknown>) => ProviderLike;
  errors: { InvalidTarget: new (description?: string) => Error };
  interactionPolicy: { base(): PromptPolicy };
}

const OIDC_PROVIDER_SPECIFIER: string = "oidc-provider";
let oidcProviderModule: Promise<OidcProviderModule> | undefined;
function loadOidcProvider(): Promise<OidcProviderModule> {
  // On Node 20 importing it prints one "Unsupported runtime" warning to stderr (it wants Node 22); it works.
  oidcProviderModule ??= import(OIDC_PROVIDER_SPECIFIER) as Promise<OidcProviderModule>;
  return oidcProviderModule;
}

// ---------------------------------------------------------------------------------------------------
// Storage. Our own in-memory adapter rather than oidc-provider's: that one is an LRU capped at 1000
// entries (a benchmark would silently lose sessions), it prints a warning, and its store cannot be
// enumerated, which revokeAllSessions needs.

interface StoredPayload {
  grantId?: string;
  userCode?: string;
  uid?: string;
  consumed?: number;
  [key: string]: unknown;
}

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

  adapter(model: string): object {
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

function renderHtml(ctx: KoaContext, status: number, title: string, body: string): void {
  ctx.status = status;
  ctx.type = "html";
  ctx.body = page(title, body);
}

const pages = {
  async userCodeInput(
    ctx: KoaContext,
    form: string,
    out?: Record<string, unknown>,
    err?: { name?: string; message?: string; userCode?: string },
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
  async userCodeConfirm(ctx: KoaContext, form: string, client: ClientLike, _info: unknown, userCode: string) {
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
  async deviceSuccess(ctx: KoaContext) {
    renderHtml(ctx, 200, "Device Login Successful", "<p>You may now close this window.</p>");
  },
  async logout(ctx: KoaContext, form: string) {
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
  async postLogout(ctx: KoaContext) {
    renderHtml(ctx, 200, "You are logged out", "");
  },
  async error(ctx: KoaContext, out: Record<string, unknown>) {
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

async function makeSigningKey(): Promise<JsonWebKey> {
  const { privateKey } = await promisify(generateKeyPair)("rsa", { modulusLength: 2048 });
  const jwk = privateKey.export({ format: "jwk" });
  const kid = createHash("sha256").update(String(jwk.n)).digest("base64url").slice(0, 16);
  // RS256, as Keycloak signs by default; ID tokens default to it too.
  return { ...jwk, kid, use: "sig", alg: "RS256" };
}

async function makeTlsCertificate(dir: string): Promise<{ keyPath: string; certPath: string }> {
  const keyPath = join(dir, "tls-key.pem");
  const certPath = join(dir, "tls-cert.pem");
  // An EC key is made in milliseconds; the IP SAN is what clients verify for https://127.0.0.1.
  await promisify(execFile)("openssl", [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-days",
    "2",
    "-subj",
    "/CN=127.0.0.1",
    "-addext",
    "subjectAltName=IP:127.0.0.1",
    "-keyout",
    keyPath,
    "-out",
    certPath,
  ]);
  return { keyPath, certPath };
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

// Keycloak's subjects are UUIDs distinct from the username; a derived one keeps clients honest about
// using preferred_username for display, and stays the same across restarts of the realm.
function subjectFor(login: string): string {
  const h = createHash("sha256").update(`nix-cache-login test realm:${login}`).digest("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

async function readBody(req: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error("request body too large");
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
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

// ---------------------------------------------------------------------------------------------------

export async function startRealm(opts: RealmOptions = {}): Promise<Realm> {
  const accessTokenTTL = opts.accessTokenTTL ?? 300;
  const refreshTokenTTL = opts.refreshTokenTTL ?? 3600;
  const sessionTTL = Math.max(refreshTokenTTL, SSO_SESSION_MAX);
  const rotateRefreshToken = opts.rotateRefreshToken ?? true;
  const useTls = opts.tls ?? true;
  const serviceClientSecret = opts.serviceClientSecret ?? randomBytes(24).toString("base64url");
  let accessTokenPadding = 0;
  const users = opts.users ?? { alice: "alice-password" };
  const loginBySubject = new Map(Object.keys(users).map((login) => [subjectFor(login), login]));

  const requests: RealmRequest[] = [];
  let dispatch: ((req: http.IncomingMessage, res: http.ServerResponse) => void) | undefined;
  let realmRef: Realm | undefined;
  // Marks the realm's own replay of a request whose answer a fault replaces: not recorded twice.
  const bypass = randomBytes(16).toString("hex");

  const handler =
    (tls: boolean) =>
    (req: http.IncomingMessage, res: http.ServerResponse): void => {
      const url = req.url ?? "/";
      const path = url.split("?", 1)[0] ?? "/";
      const replay = req.headers["x-realm-replay"] === bypass;
      if (!replay) requests.push({ method: req.method ?? "GET", path, at: Date.now(), tls });
      const action = replay ? "pass" : (realmRef?.fault?.({ method: req.method ?? "GET", path }) ?? "pass");
      if (action !== "pass") {
        void applyFault(action, req, res, tls ? undefined : realmRef?.port, bypass).catch(() =>
          res.destroy(),
        );
        return;
      }
      if (debugEnabled)
        res.once("finish", () => debug(`${tls ? "https" : "http"} ${req.method} ${path} ${res.statusCode}`));
      if (!dispatch || !(path === REALM_PATH || path.startsWith(`${REALM_PATH}/`))) {
        res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
        return;
      }
      // The provider routes on the path without the prefix, and derives the prefix for the URLs it
      // prints from originalUrl (the convention of Express's mounting).
      (req as http.IncomingMessage & { originalUrl?: string }).originalUrl = url;
      req.url = url.slice(REALM_PATH.length) || "/";
      dispatch(req, res);
    };

  const tempDir = useTls ? await mkdtemp(join(tmpdir(), "nix-cache-realm-")) : undefined;
  const servers: http.Server[] = [];
  try {
    const httpServer = http.createServer(handler(false));
    servers.push(httpServer);
    const [mod, signingKey, port, tlsSetup] = await Promise.all([
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

    const policy = mod.interactionPolicy.base();
    // Keycloak asks no consent by default; oidc-provider always would for native clients.
    policy.get("consent")?.checks.remove("native_client_prompt");

    const ownsToken = async (_ctx: unknown, client: ClientLike, token: { clientId?: string }) =>
      token.clientId === client.clientId;

    const configuration: Record<string, unknown> = {
      adapter: (model: string) => store.adapter(model),
      jwks: { keys: [signingKey] },
      cookies: { keys: [randomBytes(32).toString("base64url")] },
      clients: [
        {
          client_id: PUBLIC_CLIENT_ID,
          application_type: "native",
          token_endpoint_auth_method: "none",
          // With application_type native any port on this loopback URI is accepted (RFC 8252 section 7.3).
          redirect_uris: ["http://127.0.0.1/callback"],
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
        introspection: { enabled: true, allowedPolicy: ownsToken },
        rpInitiatedLogout: {
          enabled: true,
          logoutSource: pages.logout,
          postLogoutSuccessSource: pages.postLogout,
        },
        resourceIndicators: {
          enabled: true,
          defaultResource: async (_ctx: unknown, _client: unknown, oneOf?: string[]) => oneOf ?? AUDIENCE,
          // Refresh and code exchanges keep the resource granted at authorization, so they also get JWTs.
          useGrantedResource: async () => true,
          getResourceServerInfo: async (_ctx: unknown, indicator: string) => {
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
      issueRefreshToken: async (_ctx: unknown, client: ClientLike) =>
        client.grantTypeAllowed("refresh_token"),
      rotateRefreshToken,
      loadExistingGrant: async (ctx: KoaContext) => {
        const oidc = ctx.oidc;
        const accountId = oidc.session.accountId;
        const clientId = oidc.client?.clientId;
        if (!accountId || !clientId) return undefined;
        const grantId = oidc.result?.consent?.grantId ?? oidc.session.grantIdFor(clientId);
        const { Grant } = provider;
        const grant = (grantId ? await Grant.find(grantId) : undefined) ?? new Grant({ accountId, clientId });
        // Grant whatever is asked for, so the consent prompt never has anything missing.
        grant.addOIDCScope([...oidc.requestParamOIDCScopes].join(" "));
        grant.addOIDCClaims([...oidc.requestParamClaims]);
        for (const indicator of Object.keys(oidc.resourceServers)) {
          grant.addResourceScope(indicator, [...oidc.requestParamScopes].join(" "));
        }
        await grant.save();
        return grant;
      },
      findAccount: async (_ctx: unknown, sub: string) => {
        const login = loginBySubject.get(sub);
        if (login === undefined) return undefined;
        return { accountId: sub, claims: async () => ({ sub, preferred_username: login }) };
      },
      // Keycloak access tokens name the user too; service account tokens here carry only sub (the client).
      extraTokenClaims: async (_ctx: unknown, token: { accountId?: string }) => {
        const login = token.accountId === undefined ? undefined : loginBySubject.get(token.accountId);
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
      renderError: pages.error,
    };

    // devInteractions prints one warning to stderr per provider; there is no switch for it.
    const provider = new mod.default(issuer, configuration);

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
        provider.on(event, (_ctx: unknown, err: unknown) => {
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

    // Keycloak (PR 9711): when the client has a PKCE method set, the device authorization request
    // needs a code_challenge, and the device code grant the matching code_verifier. oidc-provider
    // has no PKCE on the device flow, so the realm adds it here, with Keycloak's error texts.
    const deviceChallenges = new Map<string, string>();
    provider.use(async (ctx, next) => {
      const deviceAuth = ctx.method === "POST" && ctx.path === ROUTES.device_authorization;
      const token = ctx.method === "POST" && ctx.path === ROUTES.token;
      if (!deviceAuth && !token) return next();
      const text = await readBody(ctx.req);
      // oidc-provider takes an already read body from here.
      ctx.request.body = text;
      const form = new URLSearchParams(text);
      const refuse = (error: string, description: string) => {
        ctx.status = 400;
        ctx.type = "application/json";
        ctx.body = { error, error_description: description };
      };
      if (deviceAuth) {
        const method = form.get("code_challenge_method");
        const challenge = form.get("code_challenge");
        if (method === null) return refuse("invalid_request", "Missing parameter: code_challenge_method");
        if (method !== "S256") return refuse("invalid_request", "Invalid parameter: code_challenge_method");
        if (challenge === null || !/^[A-Za-z0-9_-]{43,128}$/.test(challenge)) {
          return refuse("invalid_request", "Invalid parameter: code_challenge");
        }
        await next();
        if (ctx.status === 200 && isRecord(ctx.body) && typeof ctx.body.device_code === "string") {
          deviceChallenges.set(ctx.body.device_code, challenge);
        }
        return;
      }
      if (form.get("grant_type") === DEVICE_CODE_GRANT) {
        const challenge = deviceChallenges.get(form.get("device_code") ?? "");
        const verifier = form.get("code_verifier");
        if (challenge !== undefined) {
          if (verifier === null) return refuse("invalid_grant", "PKCE code verifier not specified");
          if (createHash("sha256").update(verifier).digest("base64url") !== challenge) {
            return refuse("invalid_grant", "PKCE verification failed: Code mismatch");
          }
        }
      }
      return next();
    });
    provider.use(async (ctx, next) => {
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
      if (ctx.status !== 200 || !isRecord(ctx.body)) return;
      const body = ctx.body;
      if (ctx.path === ROUTES.token && typeof body.refresh_token === "string") {
        // Keycloak reports the refresh token's lifetime; take it from the stored token, so a refresh
        // that keeps the old token reports what is left of it.
        const refreshToken = await provider.RefreshToken.find(body.refresh_token);
        if (refreshToken?.exp !== undefined) {
          ctx.body = {
            ...body,
            refresh_expires_in: Math.max(
              0,
              refreshToken.exp - Math.max(started, refreshToken.iat ?? started),
            ),
          };
        }
      } else if (ctx.path === ROUTES.device_authorization && opts.deviceInterval !== undefined) {
        ctx.body = { ...body, interval: opts.deviceInterval };
      }
    });

    dispatch = provider.callback();

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
      signInOverHttp: (o = {}) =>
        signInOverHttp(
          issuer,
          o.login ?? firstLogin(users),
          o.password ?? users[o.login ?? firstLogin(users)],
          o.scope,
        ),
      approveDeviceOverHttp: (userCode, o = {}) =>
        approveDeviceOverHttp(
          issuer,
          userCode,
          o.login ?? firstLogin(users),
          o.password ?? users[o.login ?? firstLogin(users)],
          o.deny ?? false,
        ),
      setAccessTokenPadding: (bytes) => {
        accessTokenPadding = bytes;
      },
      revokeAllSessions: async () => {
        store.dropSessionsAndTokens();
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

// ---------------------------------------------------------------------------------------------------
// A minimal scripted browser: fetch with a cookie jar, manual redirects and HTML form submission.

interface Cookie {
  name: string;
  value: string;
  path: string;
}

class Browser {
  private readonly cookies = new Map<string, Cookie>();

  constructor(private readonly origin: string) {}

  private store(setCookies: string[]): void {
    for (const line of setCookies) {
      const [pair = "", ...attributes] = line.split(";");
      const eq = pair.indexOf("=");
      if (eq < 1) continue;
      const cookie = { name: pair.slice(0, eq).trim(), value: pair.slice(eq + 1).trim(), path: "/" };
      let expired = false;
      for (const attribute of attributes) {
        const [rawKey = "", ...rest] = attribute.split("=");
        const key = rawKey.trim().toLowerCase();
        const value = rest.join("=").trim();
        if (key === "path" && value.startsWith("/")) cookie.path = value;
        if (key === "max-age" && Number(value) <= 0) expired = true;
        if (key === "expires" && Date.parse(value) <= Date.now()) expired = true;
      }
      const id = `${cookie.name}\0${cookie.path}`;
      if (expired) this.cookies.delete(id);
      else this.cookies.set(id, cookie);
    }
  }

  private cookieHeader(path: string): string {
    const matching = [...this.cookies.values()].filter(
      (c) => path === c.path || path.startsWith(c.path.endsWith("/") ? c.path : `${c.path}/`),
    );
    // More specific paths first, as browsers send them.
    matching.sort((a, b) => b.path.length - a.path.length);
    return matching.map((c) => `${c.name}=${c.value}`).join("; ");
  }

  /**
   * Request url and follow redirects (as GET) until a page, or until a redirect leaves the realm's
   * origin: that one is returned unfollowed (it is the client's redirect_uri).
   */
  async go(
    url: string,
    form?: Record<string, string>,
  ): Promise<{ status: number; url: string; html: string; leftTo?: string }> {
    let current = new URL(url);
    let body: URLSearchParams | undefined = form ? new URLSearchParams(form) : undefined;
    for (let hop = 0; hop < 20; hop++) {
      if (current.origin !== this.origin) throw new Error(`refusing to leave the realm for ${current.href}`);
      const headers: Record<string, string> = {};
      const cookie = this.cookieHeader(current.pathname);
      if (cookie) headers.cookie = cookie;
      const res = await fetch(current, { method: body ? "POST" : "GET", headers, body, redirect: "manual" });
      this.store(res.headers.getSetCookie());
      const location = res.headers.get("location");
      if (res.status >= 300 && res.status < 400 && location) {
        await res.arrayBuffer();
        const next = new URL(location, current);
        if (next.origin !== this.origin)
          return { status: res.status, url: current.href, html: "", leftTo: next.href };
        current = next;
        body = undefined;
        continue;
      }
      return { status: res.status, url: current.href, html: await res.text() };
    }
    throw new Error(`too many redirects from ${url}`);
  }
}

interface HtmlForm {
  id?: string;
  action: string;
  fields: Record<string, string>;
}

function decodeEntities(value: string): string {
  return value.replace(/&(#x[0-9a-f]+|#\d+|amp|lt|gt|quot|apos);/gi, (_m, e: string) => {
    const lower = e.toLowerCase();
    if (lower.startsWith("#x")) return String.fromCodePoint(parseInt(lower.slice(2), 16));
    if (lower.startsWith("#")) return String.fromCodePoint(parseInt(lower.slice(1), 10));
    return { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" }[lower] ?? "";
  });
}

function attributes(tag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of tag.matchAll(/([a-zA-Z_:][\w:.-]*)\s*=\s*"([^"]*)"/g)) {
    if (m[1] !== undefined && m[2] !== undefined) out[m[1].toLowerCase()] = decodeEntities(m[2]);
  }
  return out;
}

function parseForms(html: string, pageUrl: string): HtmlForm[] {
  const forms: HtmlForm[] = [];
  for (const m of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)) {
    const attrs = attributes(m[1] ?? "");
    const fields: Record<string, string> = {};
    for (const input of (m[2] ?? "").matchAll(/<input\b([^>]*)>/gi)) {
      const a = attributes(input[1] ?? "");
      if (a.name !== undefined) fields[a.name] = a.value ?? "";
    }
    forms.push({ id: attrs.id, action: new URL(attrs.action ?? pageUrl, pageUrl).href, fields });
  }
  return forms;
}

function findForm(html: string, pageUrl: string, field: string, what: string): HtmlForm {
  const form = parseForms(html, pageUrl).find((f) => field in f.fields);
  if (!form) throw new Error(`expected ${what} at ${pageUrl}, got: ${pageText(html)}`);
  return form;
}

/** The visible text of a page, shortened, for error messages. */
function pageText(html: string): string {
  return html
    .replace(/<style[\s\S]*?<\/style>/gi, " ")
    .replace(/<[^>]+>/g, " ")
    .replace(/\s+/g, " ")
    .trim()
    .slice(0, 300);
}

async function logIn(
  browser: Browser,
  loginPage: { url: string; html: string },
  login: string,
  password: string | undefined,
) {
  const form = findForm(loginPage.html, loginPage.url, "login", "the login form");
  const result = await browser.go(form.action, { ...form.fields, login, password: password ?? "" });
  if (result.status === 401) throw new Error(`login as ${login} rejected: invalid username or password`);
  return result;
}

async function signInOverHttp(
  issuer: string,
  login: string,
  password: string | undefined,
  scope = "openid",
): Promise<Record<string, unknown>> {
  const browser = new Browser(new URL(issuer).origin);
  const verifier = randomBytes(32).toString("base64url");
  const state = randomBytes(16).toString("base64url");
  // Nothing listens here: the redirect is read, not followed. The port only shows any port is accepted.
  const redirectUri = "http://127.0.0.1:1/callback";
  const auth = new URL(`${issuer}${ROUTES.authorization}`);
  auth.search = new URLSearchParams({
    client_id: PUBLIC_CLIENT_ID,
    response_type: "code",
    redirect_uri: redirectUri,
    scope,
    state,
    code_challenge: createHash("sha256").update(verifier).digest("base64url"),
    code_challenge_method: "S256",
  }).toString();

  const loginPage = await browser.go(auth.href);
  const done = loginPage.leftTo ? loginPage : await logIn(browser, loginPage, login, password);
  if (!done.leftTo?.startsWith(`${redirectUri}?`)) {
    throw new Error(
      `sign-in did not come back to the redirect URI (status ${done.status} at ${done.url}): ${pageText(done.html)}`,
    );
  }
  const callback = new URL(done.leftTo).searchParams;
  if (callback.get("error")) {
    throw new Error(
      `authorization failed: ${callback.get("error")} ${callback.get("error_description") ?? ""}`,
    );
  }
  const code = callback.get("code");
  if (!code || callback.get("state") !== state) throw new Error(`bad authorization response: ${done.leftTo}`);

  const res = await fetch(`${issuer}${ROUTES.token}`, {
    method: "POST",
    body: new URLSearchParams({
      grant_type: "authorization_code",
      code,
      redirect_uri: redirectUri,
      client_id: PUBLIC_CLIENT_ID,
      code_verifier: verifier,
    }),
  });
  const json = (await res.json()) as Record<string, unknown>;
  if (!res.ok) throw new Error(`code exchange failed (${res.status}): ${JSON.stringify(json)}`);
  return json;
}

async function approveDeviceOverHttp(
  issuer: string,
  userCode: string,
  login: string,
  password: string | undefined,
  deny: boolean,
): Promise<void> {
  const browser = new Browser(new URL(issuer).origin);
  const entry = await browser.go(`${issuer}${ROUTES.code_verification}`);
  const input = findForm(entry.html, entry.url, "user_code", "the device code form");
  const confirmPage = await browser.go(input.action, { ...input.fields, user_code: userCode });
  const confirm = findForm(confirmPage.html, confirmPage.url, "confirm", "the device confirmation form");

  if (deny) {
    const { confirm: _yes, ...fields } = confirm.fields;
    const denied = await browser.go(confirm.action, { ...fields, abort: "yes" });
    if (!denied.html.includes("denied")) throw new Error(`device denial not acknowledged at ${denied.url}`);
    return;
  }

  const loginPage = await browser.go(confirm.action, confirm.fields);
  const done = await logIn(browser, loginPage, login, password);
  if (done.status !== 200 || !done.html.includes("Device Login Successful")) {
    throw new Error(
      `device approval did not succeed (status ${done.status} at ${done.url}): ${pageText(done.html)}`,
    );
  }
}
