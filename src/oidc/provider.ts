/**
 * The only module that talks OAuth: discovery (cached in the token state), grants and revocation,
 * all through openid-client. Protocol errors are translated into CliErrors here.
 */
import type * as OidcClient from "openid-client";
import type { Config } from "../config/load.ts";
import type { TokenEndpointAuthMethod } from "../config/rules.ts";
import type { Env } from "../config/paths.ts";
import { CliError, ExitCode, type ExitCodeValue } from "../errors.ts";
import type { ClientCredential } from "../core/setup.ts";
import { parseClientKey, webCryptoKey } from "./client-key.ts";
import type { TokenState } from "../store/state.ts";
import { printable, quoted } from "../cli/terminal-text.ts";
import { numericDateMs } from "./jwt-claims.ts";
import {
  checkedEndpoint,
  describeNetworkError,
  makeFetch,
  neverReachedServer,
  requestUrlOf,
  type Logger,
} from "./http.ts";

type Lib = typeof OidcClient;
let lib: Promise<Lib> | undefined;
const loadLib = (): Promise<Lib> => (lib ??= import("openid-client"));

/** A discovery document younger than this is used without asking the provider again. */
export const DISCOVERY_MAX_AGE_MS = 24 * 60 * 60 * 1000;

export interface TokenSet {
  accessToken: string;
  refreshToken: string | undefined;
  /**
   * Absolute times. For the access token: expires_in, else the JWT's `exp`, else (accessExpiryAssumed)
   * default_token_lifetime from now; a lifetime too large for a Date is capped at year 9999.
   */
  accessExpiresAt: Date | null;
  refreshExpiresAt: Date | null | undefined;
  /** True when accessExpiresAt is config.defaultTokenLifetime from now: the provider said nothing. */
  accessExpiryAssumed: boolean;
  /** For display: control characters removed. */
  username: string | undefined;
  /** The ID token's `sub`, when there is one. */
  subject: string | undefined;
  /**
   * Provider minus local time in ms, measured from this answer (its `Date` header, else the access
   * token's `iat`), and the local time of the answer. The expiries above are on the provider's clock.
   */
  clockOffsetMs: number | undefined;
  receivedAt: Date;
}

/**
 * What a token response holds before any of openid-client's checks ran: handed to
 * ProviderOptions.onRefreshTokenAnswer so that a rotated refresh token is saved first.
 */
export interface RotatedRefreshToken {
  refreshToken: string;
  refreshExpiresAt: Date | null;
  clockOffsetMs: number | undefined;
  receivedAt: Date;
}

/** One authorization code request; the verifier and nonce never leave this process. */
export interface AuthorizationRequest {
  url: URL;
  redirectUri: string;
  state: string;
  nonce: string;
  codeVerifier: string;
}

/** What the user is shown for a device sign-in; `response` also holds the device code (a secret). */
export interface DeviceAuthorization {
  verificationUri: string;
  verificationUriComplete: string | undefined;
  userCode: string;
  expiresIn: number;
  /** Seconds between polls: the provider's interval clamped to DEVICE_INTERVAL_MIN..MAX. */
  interval: number;
  response: unknown;
  /** PKCE (RFC 7636) verifier sent with the device code on every poll. */
  codeVerifier: string;
}

export interface ProviderOptions {
  config: Config;
  env: Env;
  log: Logger;
  now: () => Date;
  /** Present in service-account mode. */
  credential?: ClientCredential | undefined;
  /** The cached discovery document, if any. */
  discovery?: TokenState["discovery"];
  /** The provider's clock minus ours, as far as known before any request (ms). */
  clockSkewMs?: number | undefined;
}

/**
 * The discovery fields the tool (and openid-client for our grants) reads; only these are kept in
 * the token state. Strings longer than MAX_DISCOVERY_STRING and lists longer than
 * MAX_DISCOVERY_LIST are left out: no endpoint or method name is that long.
 */
export const DISCOVERY_FIELDS = [
  "issuer",
  "authorization_endpoint",
  "token_endpoint",
  "jwks_uri",
  "revocation_endpoint",
  "end_session_endpoint",
  "device_authorization_endpoint",
  "pushed_authorization_request_endpoint",
  "require_pushed_authorization_requests",
  "authorization_response_iss_parameter_supported",
  "token_endpoint_auth_methods_supported",
  "token_endpoint_auth_signing_alg_values_supported",
  "id_token_signing_alg_values_supported",
  "code_challenge_methods_supported",
  "dpop_signing_alg_values_supported",
  "grant_types_supported",
  "response_types_supported",
] as const;
const MAX_DISCOVERY_STRING = 2048;
const MAX_DISCOVERY_LIST = 64;

/** The document cut down to DISCOVERY_FIELDS, each within its bounds. */
export function keptDiscovery(doc: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of DISCOVERY_FIELDS) {
    const v = doc[key];
    if (typeof v === "boolean") out[key] = v;
    else if (typeof v === "string" && v.length <= MAX_DISCOVERY_STRING) out[key] = v;
    else if (
      Array.isArray(v) &&
      v.length <= MAX_DISCOVERY_LIST &&
      v.every((x) => typeof x === "string" && x.length <= 256)
    ) {
      out[key] = v;
    }
  }
  return out;
}

export class Provider {
  private configuration: OidcClient.Configuration | undefined;
  /** Set when discovery was (re)fetched: the caller saves it with the token state. */
  discovery: TokenState["discovery"];
  private discoveryFromCache = false;
  /** The clockSkew (s) the configuration in use was made with. */
  private usedSkewSec = 0;
  /** The request in flight, for messages about its answer. */
  private what = "request";
  /** Provider minus local time (ms) from the latest answer that carried a `Date` header. */
  private dateOffsetMs: number | undefined;
  /**
   * Called with a token response's refresh token before openid-client checks the response, so that
   * a rotated one is saved even when a check then refuses the answer (see refresh()).
   */
  private onRefreshTokenAnswer: ((t: RotatedRefreshToken) => Promise<void>) | undefined;
  /** The latest 200 answer of the token endpoint, as read (see replayOnProviderClock). */
  private lastTokenAnswer:
    { text: string; status: number; headers: Headers; url: string; offsetMs: number | undefined } | undefined;

  constructor(private readonly opts: ProviderOptions) {
    this.discovery = opts.discovery;
  }

  get host(): string {
    return new URL(this.opts.config.issuer).host;
  }

  /** The token endpoint authentication method in use: configured, else chosen from discovery. */
  authMethod(metadata: Record<string, unknown> | undefined): TokenEndpointAuthMethod | "none" {
    const cred = this.opts.credential;
    if (cred === undefined) return "none";
    if ("keyText" in cred) return "private_key_jwt";
    return this.opts.config.tokenEndpointAuthMethod ?? chooseSecretMethod(metadata);
  }

  private async clientAuth(
    l: Lib,
    metadata: Record<string, unknown> | undefined,
  ): Promise<OidcClient.ClientAuth> {
    const cred = this.opts.credential;
    if (cred === undefined) return l.None();
    if ("keyText" in cred) {
      const parsed = cred.key ?? parseClientKey(this.opts.config, cred.keyText, cred.keyFile);
      const key = (await webCryptoKey(parsed)) as OidcClient.CryptoKey;
      this.opts.log(`client authentication: private_key_jwt (${parsed.alg})`);
      // OpenID Connect Core section 9: the assertion's audience SHOULD be the token endpoint URL.
      // Keycloak accepts it as well as the issuer; providers such as Glewlwyd accept only it
      // (openid-client puts the issuer there).
      const tokenEndpoint = metadata?.token_endpoint;
      return l.PrivateKeyJwt(parsed.kid === undefined ? key : { key, kid: parsed.kid }, {
        [l.modifyAssertion]: (_header, payload) => {
          if (typeof tokenEndpoint === "string") payload.aud = tokenEndpoint;
        },
      });
    }
    const method = this.authMethod(metadata);
    this.opts.log(`client authentication: ${method}`);
    return method === "client_secret_post" ? l.ClientSecretPost(cred.secret) : clientSecretBasic(cred.secret);
  }

  /**
   * The provider's clock for openid-client's checks of ID token timestamps (`iat`, `exp`, `nbf`):
   * its clockSkew is our measured offset, its clockTolerance (30 s) the small leeway on top.
   */
  private clientMetadata(l: Lib): Partial<OidcClient.ClientMetadata> {
    this.usedSkewSec = Math.round((this.dateOffsetMs ?? this.opts.clockSkewMs ?? 0) / 1000);
    return { [l.clockSkew]: this.usedSkewSec };
  }

  /**
   * makeFetch, plus what every answer tells: the provider's time (`Date`), and for the token
   * endpoint a look at the answer before openid-client's: a 200 must be a JSON object with an
   * access token (one clear line otherwise), and a refresh token in it is handed to
   * onRefreshTokenAnswer first.
   */
  private fetcher(): OidcClient.CustomFetch {
    const base = makeFetch(this.opts.env, this.opts.log);
    return (async (url: string, init: RequestInit) => {
      const res = await base(url, init);
      const date = Date.parse(res.headers.get("date") ?? "");
      // HTTP dates have whole seconds, cut off: the provider's time lies in the next second.
      if (Number.isFinite(date)) this.dateOffsetMs = date + 500 - this.opts.now().getTime();
      if ((init.method ?? "GET").toUpperCase() !== "POST" || res.status !== 200) return res;
      const endpoint = this.discovery?.metadata.token_endpoint;
      if (typeof endpoint !== "string" || !sameEndpoint(url, endpoint)) return res;
      return this.inspectTokenAnswer(res, url);
    }) as OidcClient.CustomFetch;
  }

  private async inspectTokenAnswer(res: Response, url: string): Promise<Response> {
    const text = await res.text();
    const where = `${new URL(url).origin}${new URL(url).pathname}`;
    const malformed = (problem: string) =>
      new CliError(`the token endpoint ${where} answered the ${this.what} with ${problem}`, {
        code: "token_answer_malformed",
        hint: "the provider (or a proxy in front of it) sent something other than a token response: check issuer in the configuration and any HTTPS_PROXY, and try again; --verbose shows the requests",
      });
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw malformed(text.trim() === "" ? "an empty body" : "a body that is not JSON (garbage, or cut off)");
    }
    if (typeof body !== "object" || body === null || Array.isArray(body)) {
      throw malformed("JSON that is not an object");
    }
    const answer = body as Record<string, unknown>;
    if (typeof answer.access_token !== "string" || answer.access_token === "") {
      throw malformed("no access_token in it");
    }
    const receivedAt = this.opts.now();
    const offset = this.answerOffset(answer.access_token, receivedAt);
    if (
      typeof answer.refresh_token === "string" &&
      answer.refresh_token !== "" &&
      this.onRefreshTokenAnswer
    ) {
      await this.onRefreshTokenAnswer({
        refreshToken: answer.refresh_token,
        refreshExpiresAt: refreshExpiry(answer, receivedAt.getTime() + (offset ?? 0)),
        clockOffsetMs: offset,
        receivedAt,
      });
    }
    this.lastTokenAnswer = { text, status: res.status, headers: res.headers, url: res.url, offsetMs: offset };
    return answerCopy(this.lastTokenAnswer);
  }

  /**
   * When openid-client refused a token answer for its ID token's timestamps and the answer itself
   * showed that our clock is off (its `Date` header, else its access token's `iat`: Keycloak sends
   * no `Date`), the same answer is checked once more on the
   * provider's clock: a configuration whose clockSkew is the measured offset, whose fetch hands
   * back the answer already read (the token endpoint is not asked again: a grant is never sent
   * twice) and whose key set is the one already fetched. Every check is still openid-client's.
   */
  private async replayOnProviderClock<T>(
    l: Lib,
    e: unknown,
    op: (l: Lib, c: OidcClient.Configuration) => Promise<T>,
  ): Promise<T> {
    const answer = this.lastTokenAnswer;
    const used = this.usedSkewSec;
    const offset = answer?.offsetMs;
    const measured = offset === undefined ? undefined : Math.round(offset / 1000);
    const timestamps = [e, (e as { cause?: unknown } | undefined)?.cause].some(
      (x) => (x as { code?: unknown } | undefined)?.code === "OAUTH_JWT_TIMESTAMP_CHECK_FAILED",
    );
    if (
      !timestamps ||
      answer === undefined ||
      this.configuration === undefined ||
      measured === undefined ||
      Math.abs(measured - used) <= 30
    ) {
      throw e;
    }
    this.opts.log(
      `the answer's timestamps are off by the clock: checking it on the provider's clock (${measured} s)`,
    );
    const c = new l.Configuration(
      this.configuration.serverMetadata(),
      this.opts.config.clientId,
      { [l.clockSkew]: measured },
      await this.clientAuth(l, this.discovery?.metadata),
    );
    this.configure(l, c);
    const live = c[l.customFetch] as (url: string, init: RequestInit) => Promise<Response>;
    const endpoint = String(this.discovery?.metadata.token_endpoint);
    c[l.customFetch] = ((url: string, init: RequestInit) =>
      (init.method ?? "GET").toUpperCase() === "POST" && sameEndpoint(url, endpoint)
        ? Promise.resolve(answerCopy(answer))
        : live(url, init)) as OidcClient.CustomFetch;
    const keys = l.getJwksCache(this.configuration);
    if (keys !== undefined) l.setJwksCache(c, keys);
    return op(l, c);
  }

  /**
   * Provider minus local time for an answer received at `receivedAt`: its `Date` header; without
   * one, the access token's `iat` (a provider may hand out a cached token, so `iat` comes second).
   */
  private answerOffset(accessToken: string | undefined, receivedAt: Date): number | undefined {
    if (this.dateOffsetMs !== undefined) return this.dateOffsetMs;
    const iat = numericDateMs(accessToken, "iat");
    return iat === undefined ? undefined : iat + 500 - receivedAt.getTime();
  }

  private configure(l: Lib, c: OidcClient.Configuration): OidcClient.Configuration {
    c.timeout = this.opts.config.timeoutSeconds;
    c[l.customFetch] = this.fetcher();
    if (new URL(this.opts.config.issuer).protocol === "http:") l.allowInsecureRequests(c);
    return c;
  }

  private async discover(force: boolean): Promise<OidcClient.Configuration> {
    const l = await loadLib();
    const { config } = this.opts;
    const cached = this.discovery;
    const fresh =
      cached !== undefined &&
      this.opts.now().getTime() - new Date(cached.fetched_at).getTime() < DISCOVERY_MAX_AGE_MS &&
      cached.metadata.issuer === config.issuer;
    if (!force && fresh) {
      this.discoveryFromCache = true;
      const c = new l.Configuration(
        cached.metadata as unknown as OidcClient.ServerMetadata,
        config.clientId,
        this.clientMetadata(l),
        await this.clientAuth(l, cached.metadata),
      );
      return this.configure(l, c);
    }
    this.opts.log(`discovering ${config.issuer}`);
    // Discovered with no client authentication: the method may depend on what the document offers.
    const found = await l
      .discovery(new URL(config.issuer), config.clientId, undefined, l.None(), {
        execute: new URL(config.issuer).protocol === "http:" ? [l.allowInsecureRequests] : [],
        timeout: config.timeoutSeconds,
        [l.customFetch]: this.fetcher(),
      })
      .catch((e: unknown) => {
        throw this.translate(e, "discovery");
      });
    this.discoveryFromCache = false;
    const metadata = found.serverMetadata();
    // Only what we use is kept: a document of megabytes would be stored and rewritten at every renewal.
    this.discovery = {
      fetched_at: this.opts.now().toISOString(),
      metadata: keptDiscovery(metadata as unknown as Record<string, unknown>),
    };
    const c = new l.Configuration(
      this.discovery.metadata as unknown as OidcClient.ServerMetadata,
      config.clientId,
      this.clientMetadata(l),
      await this.clientAuth(l, this.discovery.metadata),
    );
    return this.configure(l, c);
  }

  /**
   * Runs op with a configuration from the cached discovery document; when that document may be
   * stale (the request could not be sent, or the endpoint is gone) rediscover once and retry.
   * A grant is resent only when it provably never reached the server (connection refused, DNS,
   * TLS handshake): after any answer (a 5xx, a redirect) the provider may have acted on it, and a
   * refresh token sent twice after a rotation is a reuse that ends the session.
   */
  private async withConfig<T>(
    what: string,
    op: (l: Lib, c: OidcClient.Configuration) => Promise<T>,
    kind: "grant" | "other" = "other",
  ): Promise<T> {
    const l = await loadLib();
    this.configuration ??= await this.discover(false);
    this.what = what;
    try {
      return await op(l, this.configuration).catch((e: unknown) =>
        kind === "grant" ? this.replayOnProviderClock(l, e, op) : Promise.reject(e),
      );
    } catch (e) {
      const endpointGone =
        kind === "other" && e instanceof l.ClientError && e.code === "OAUTH_RESPONSE_IS_NOT_CONFORM";
      if (this.discoveryFromCache && (neverReachedServer(e) || endpointGone)) {
        this.opts.log(`${what} failed with a cached discovery document; discovering again`);
        this.configuration = await this.discover(true);
        try {
          return await op(l, this.configuration);
        } catch (e2) {
          throw this.translate(e2, what);
        }
      }
      throw this.translate(e, what);
    }
  }

  async metadata(): Promise<Record<string, unknown>> {
    this.configuration ??= await this.discover(false);
    return this.configuration.serverMetadata() as unknown as Record<string, unknown>;
  }

  /**
   * The refresh token grant. `saveRotated` gets the new refresh token as soon as the answer is
   * read, before openid-client checks it: once the provider has rotated the token, the old one is
   * spent (replaying it ends the session at Keycloak), so the new one must survive whatever
   * follows. What can still refuse the answer after that: the token type, the ID token (its
   * signature, `iss`, `aud`, `iat`/`exp`/`nbf` against the provider's clock, `sub` against the
   * first one) and our own checks of the access token (characters, size) and the netrc write.
   * All of these leave the saved refresh token behind, which is safe: it came from the token
   * endpoint over the same TLS connection we trust for every token, in answer to our own refresh
   * token, and the next run that uses it goes through the same checks again before any access
   * token reaches the netrc.
   */
  async refresh(
    refreshToken: string,
    saveRotated?: (t: RotatedRefreshToken) => Promise<void>,
  ): Promise<TokenSet> {
    this.onRefreshTokenAnswer = saveRotated;
    try {
      const res = await this.withConfig("refresh", (l, c) => l.refreshTokenGrant(c, refreshToken), "grant");
      return this.tokenSet(res);
    } finally {
      this.onRefreshTokenAnswer = undefined;
    }
  }

  async clientCredentials(): Promise<TokenSet> {
    const scope = this.opts.config.scopes;
    const params: Record<string, string> = scope === undefined ? {} : { scope: scope.join(" ") };
    const res = await this.withConfig(
      "client credentials grant",
      (l, c) => l.clientCredentialsGrant(c, params),
      "grant",
    );
    return this.tokenSet(res);
  }

  /**
   * Ends the session: RFC 7009 revocation when advertised, else Keycloak's logout endpoint, which
   * accepts a refresh token from the client it was issued to.
   */
  revoke(refreshToken: string): Promise<"revoked" | "logged-out"> {
    return this.withConfig("revocation", async (l, c) => {
      const meta = c.serverMetadata();
      if (meta.revocation_endpoint !== undefined) {
        await l.tokenRevocation(c, refreshToken, { token_type_hint: "refresh_token" });
        return "revoked" as const;
      }
      if (meta.end_session_endpoint === undefined) {
        throw new CliError(`${this.host} advertises neither a revocation nor a logout endpoint`, {
          code: "provider_no_revocation",
        });
      }
      const endpoint = checkedEndpoint(meta.end_session_endpoint, this.opts.config.issuer, "logout endpoint");
      const body = new URLSearchParams({ client_id: this.opts.config.clientId, refresh_token: refreshToken });
      const res = await makeFetch(this.opts.env, this.opts.log)(endpoint.href, {
        method: "POST",
        body,
        redirect: "manual",
        signal: AbortSignal.timeout(this.opts.config.timeoutSeconds * 1000),
      });
      if (res.status >= 300 && res.status < 400) {
        throw new CliError(
          `${this.host} answered the logout request with a redirect (HTTP ${res.status}), which is not followed: it would send the refresh token elsewhere`,
        );
      }
      if (!res.ok && res.status !== 204) {
        throw new CliError(`${this.host} answered the logout request with HTTP ${res.status}`, {
          code: "provider_logout_failed",
        });
      }
      return "logged-out" as const;
    });
  }

  /** The scopes a user sign-in asks for: the configured ones, always with `openid` (we need the ID token). */
  private loginScope(): string {
    return [...new Set(["openid", ...(this.opts.config.scopes ?? [])])].join(" ");
  }

  /**
   * Starts an authorization code request (RFC 6749 4.1) with PKCE S256 (RFC 7636), `state` and
   * `nonce`. The URL carries no secret (the verifier stays here), so it may be printed and logged.
   */
  authorizationRequest(redirectUri: string): Promise<AuthorizationRequest> {
    return this.withConfig("authorization request", async (l, c) => {
      if (c.serverMetadata().authorization_endpoint === undefined) {
        throw new CliError(`${this.host} advertises no authorization endpoint`, {
          code: "provider_no_authorization_endpoint",
          hint: "check that the issuer URL points at the realm",
        });
      }
      const codeVerifier = l.randomPKCECodeVerifier();
      const state = l.randomState();
      const nonce = l.randomNonce();
      const url = l.buildAuthorizationUrl(c, {
        response_type: "code",
        redirect_uri: redirectUri,
        scope: this.loginScope(),
        state,
        nonce,
        code_challenge: await l.calculatePKCECodeChallenge(codeVerifier),
        code_challenge_method: "S256",
      });
      return { url, redirectUri, state, nonce, codeVerifier };
    });
  }

  /**
   * Fetches the provider's signing keys ahead of the callback, so that checking the ID token's
   * signature costs no request while the user waits for the browser to finish.
   */
  async prefetchSigningKeys(): Promise<void> {
    const l = await loadLib();
    this.configuration ??= await this.discover(false);
    const c = this.configuration;
    const uri = c.serverMetadata().jwks_uri;
    if (uri === undefined) return;
    const endpoint = checkedEndpoint(uri, this.opts.config.issuer, "signing key set (jwks_uri)");
    const res = await makeFetch(this.opts.env, this.opts.log)(endpoint.href, {
      method: "GET",
      redirect: "manual",
      headers: { accept: "application/json" },
      signal: AbortSignal.timeout(this.opts.config.timeoutSeconds * 1000),
    });
    if (!res.ok) return;
    const jwks = (await res.json()) as { keys?: unknown };
    if (!Array.isArray(jwks.keys)) return;
    // openid-client treats a cache younger than 5 minutes as fresh; older, it fetches the keys itself.
    l.setJwksCache(c, { jwks: jwks as OidcClient.JWKS, uat: Math.floor(Date.now() / 1000) });
  }

  /**
   * Exchanges the code from the loopback callback: openid-client checks `state` and `iss` (RFC 9207)
   * of the response, sends the PKCE verifier, and validates the ID token (signature against the
   * provider's JWKS, `iss`, `aud`, `nonce`, `exp`).
   */
  async exchangeCode(callbackUrl: URL, request: AuthorizationRequest): Promise<TokenSet> {
    const res = await this.withConfig(
      "code exchange",
      (l, c) => {
        // Off by default in openid-client (TLS vouches for the token endpoint); we check it anyway.
        l.enableNonRepudiationChecks(c);
        return l
          .authorizationCodeGrant(c, callbackUrl, {
            pkceCodeVerifier: request.codeVerifier,
            expectedState: request.state,
            expectedNonce: request.nonce,
            idTokenExpected: true,
          })
          .catch((e: unknown) => {
            throw this.loginError(e, "code exchange");
          });
      },
      "grant",
    );
    return this.tokenSet(res);
  }

  async deviceEndpoint(): Promise<string | undefined> {
    const meta = await this.metadata();
    return typeof meta.device_authorization_endpoint === "string"
      ? meta.device_authorization_endpoint
      : undefined;
  }

  /**
   * RFC 8628 section 3.1: asks for a device code and the user code to show. Always with S256 PKCE:
   * Keycloak requires it on the device grant when the client has a PKCE method set (Keycloak PR
   * 9711; int128/kubelogin issue 1470), and a provider that does not need it ignores it.
   */
  async deviceAuthorization(): Promise<DeviceAuthorization> {
    let codeVerifier = "";
    const res = await this.withConfig("device authorization", async (l, c) => {
      if (c.serverMetadata().device_authorization_endpoint === undefined) {
        throw new CliError(
          `${this.host} does not offer the device sign-in (no device authorization endpoint)`,
          {
            code: "provider_no_device_flow",
            hint: "sign in with a browser (leave out --device), or enable the OAuth 2.0 Device Authorization Grant for the client",
          },
        );
      }
      codeVerifier = l.randomPKCECodeVerifier();
      const params = {
        scope: this.loginScope(),
        code_challenge: await l.calculatePKCECodeChallenge(codeVerifier),
        code_challenge_method: "S256",
      };
      return l.initiateDeviceAuthorization(c, params).catch((e: unknown) => {
        throw this.loginError(e, "device authorization");
      });
    });
    const issuer = this.opts.config.issuer;
    const complete = res.verification_uri_complete;
    return {
      verificationUri: checkedVerificationUri(res.verification_uri, issuer).href,
      verificationUriComplete:
        complete === undefined ? undefined : checkedVerificationUri(complete, issuer).href,
      userCode: printable(res.user_code, 100),
      expiresIn: res.expires_in,
      interval: clampPollInterval(res.interval),
      response: res,
      codeVerifier,
    };
  }

  /**
   * RFC 8628 section 3.4-3.5: polls the token endpoint at the provider's interval (5 s when it names
   * none), keeps waiting on `authorization_pending`, adds 5 s on `slow_down`, and stops on
   * `expired_token`, `access_denied` or when `signal` aborts (at once, not at the next poll).
   * Not openid-client's pollDeviceAuthorizationGrant: it looks at its signal only between waits of
   * up to 5 s, so Ctrl-C would hang (and a pending timer keep the process alive) that long.
   */
  async pollDeviceAuthorization(device: DeviceAuthorization, signal: AbortSignal): Promise<TokenSet> {
    const deviceCode = (device.response as OidcClient.DeviceAuthorizationResponse).device_code;
    let interval = device.interval;
    for (;;) {
      await abortableSleep(interval * 1000, signal);
      const res = await this.withConfig(
        "device sign-in",
        (l, c) => {
          l.enableNonRepudiationChecks(c);
          return l
            .genericGrantRequest(c, DEVICE_CODE_GRANT, {
              device_code: deviceCode,
              code_verifier: device.codeVerifier,
            })
            .catch((e: unknown) => {
              const error = (e as { error?: unknown }).error;
              if (error === "authorization_pending" || error === "slow_down") return error;
              throw this.loginError(e, "device sign-in");
            });
        },
        "grant",
      );
      if (res === "authorization_pending") continue;
      if (res === "slow_down") {
        // RFC 8628 section 3.5: 5 s more for this and every later request (bounded all the same).
        interval = Math.min(interval + 5, DEVICE_INTERVAL_SLOWEST);
        this.opts.log(`the provider asked to slow down; polling every ${interval}s`);
        continue;
      }
      return this.tokenSet(res);
    }
  }

  /** Sign-in errors: an `invalid_grant` here is a bad code, not an ended session as on refresh. */
  private loginError(e: unknown, what: string): CliError {
    const err = e as {
      error?: unknown;
      error_description?: unknown;
      code?: string;
      message?: string;
    };
    const desc = typeof err.error_description === "string" ? ` (${printable(err.error_description)})` : "";
    if (err.error === "access_denied") {
      return new CliError(`the sign-in was denied at ${this.host}${desc}`, {
        code: "sign_in_denied",
        cause: e,
      });
    }
    if (err.error === "expired_token") {
      return new CliError(`the device code expired before the sign-in was approved${desc}`, {
        code: "device_code_expired",
        hint: "run `nix-cache-login login --device` again and approve it sooner",
        cause: e,
      });
    }
    if (err.error === "invalid_grant") {
      return new CliError(`${this.host} rejected the ${what}: invalid_grant${desc}`, {
        code: "sign_in_rejected",
        hint: "run `nix-cache-login login` again",
        cause: e,
      });
    }
    if (typeof err.code === "string" && err.code.startsWith("OAUTH_") && err.error === undefined) {
      const known = [
        "OAUTH_JWT_CLAIM_COMPARISON_FAILED",
        "OAUTH_JWT_TIMESTAMP_CHECK_FAILED",
        "OAUTH_INVALID_RESPONSE",
        "OAUTH_MISSING_REQUIRED_PARAMETER",
        "OAUTH_KEY_SELECTION_FAILED",
      ];
      if (known.includes(err.code)) {
        return new CliError(
          `the answer from ${this.host} to the ${what} failed validation: ${err.message ?? err.code}`,
          {
            code: "provider_answer_invalid",
            hint: "check the system clock and the client settings in Keycloak; run again with --verbose for details",
            cause: e,
          },
        );
      }
    }
    return this.translate(e, what);
  }

  private tokenSet(
    res: OidcClient.TokenEndpointResponse & OidcClient.TokenEndpointResponseHelpers,
  ): TokenSet {
    const receivedAt = this.opts.now();
    const clockOffsetMs = this.answerOffset(res.access_token, receivedAt);
    // Expiries on the provider's clock: its `exp` is, and its `expires_in` counts from its time.
    const now = receivedAt.getTime() + (clockOffsetMs ?? 0);
    const expiresIn = res.expiresIn();
    const stated = expiresIn !== undefined ? expiryAfter(now, expiresIn) : jwtExpiry(res.access_token);
    // An opaque token without expires_in: unknown, taken as fresh for a while (and `status` says
    // so), or every timer run would fetch a new one.
    const accessExpiresAt = stated ?? expiryAfter(now, this.opts.config.defaultTokenLifetime);
    const refreshExpiresAt =
      res.refresh_token === undefined ? undefined : refreshExpiry(res as Record<string, unknown>, now);
    const claims = res.claims();
    const name =
      claims === undefined
        ? undefined
        : typeof claims.preferred_username === "string"
          ? claims.preferred_username
          : claims.sub;
    return {
      accessToken: res.access_token,
      refreshToken: res.refresh_token,
      accessExpiresAt,
      accessExpiryAssumed: stated === null,
      refreshExpiresAt,
      username: name === undefined ? undefined : printable(name, 100),
      subject: claims?.sub,
      clockOffsetMs,
      receivedAt,
    };
  }

  /** Turns whatever openid-client threw into one line for the user, with detail for --verbose. */
  translate(e: unknown, what: string): CliError {
    // Our own errors from inside openid-client's requests (an oversized or malformed answer)
    // come back wrapped ("something went wrong"): the inner one says what happened.
    for (let cur: unknown = e, depth = 0; cur instanceof Error && depth < 4; depth++) {
      if (cur instanceof CliError) return cur;
      cur = cur.cause;
    }
    const host = this.host;
    const url = requestUrlOf(e);
    const network = describeNetworkError(e, url);
    if (network !== undefined) {
      return new CliError(`cannot reach ${url === undefined ? host : new URL(url).host}: ${network}`, {
        code: "provider_unreachable",
        hint: "check the network and the issuer URL in the configuration",
        detail: `${what} failed`,
        cause: e,
      });
    }
    const err = e as {
      name?: string;
      error?: string;
      error_description?: string;
      status?: number;
      code?: string;
      message?: string;
      cause?: unknown;
    };
    // A 401 with WWW-Authenticate (e.g. invalid_client) carries its error in the challenge.
    if (err.code === "OAUTH_WWW_AUTHENTICATE_CHALLENGE" && Array.isArray(err.cause)) {
      const params = (err.cause[0] as { parameters?: Record<string, string> } | undefined)?.parameters ?? {};
      if (params.error !== undefined) {
        err.error = params.error;
        err.error_description = params.error_description;
      }
    }
    if (typeof err.error === "string") {
      // The provider's words reach the terminal: no control characters, no screenfuls.
      err.error = printable(err.error, 100);
      const desc = typeof err.error_description === "string" ? ` (${printable(err.error_description)})` : "";
      if (err.error === "invalid_grant" && this.opts.credential !== undefined) {
        // Client credentials have no session: a sign-in cannot help, the client's setup can.
        const { clientId, clientSecretFile, clientKeyFile } = this.opts.config;
        const credential =
          clientKeyFile !== undefined
            ? `that its registered public key matches ${clientKeyFile}`
            : `that ${clientSecretFile ?? "client_secret_file"} holds its current secret`;
        return new CliError(`${host} refused the ${what} for client ${clientId}: invalid_grant${desc}`, {
          hint: `check at ${host} that client ${clientId} exists, is enabled and may use service accounts (client credentials), and ${credential}; the provider's log says more`,
          cause: e,
        });
      }
      if (err.error === "invalid_grant") {
        return new SessionEndedError(
          `your session at ${host} expired or was revoked${desc}`,
          typeof err.error_description === "string" ? printable(err.error_description) : undefined,
        );
      }
      if (err.error === "invalid_client" || err.error === "unauthorized_client") {
        return new CliError(`${host} rejected client ${this.opts.config.clientId}: ${err.error}${desc}`, {
          code: "client_rejected",
          exitCode: ExitCode.usage,
          hint:
            this.opts.credential === undefined
              ? "check client_id in the configuration and the client's settings in Keycloak"
              : this.opts.config.clientKeyFile !== undefined
                ? `check client_id, the key in ${this.opts.config.clientKeyFile} and that the client's public key (or JWKS URL) is registered at the provider`
                : `check client_id and the secret in ${this.opts.config.clientSecretFile ?? "client_secret_file"}, and token_endpoint_auth_method (now ${this.authMethod(this.discovery?.metadata)})`,
        });
      }
      return new CliError(`${host} refused the ${what}: ${err.error}${desc}`, {
        code: "provider_refused",
        cause: e,
      });
    }
    if (err.code === "OAUTH_JSON_ATTRIBUTE_COMPARISON_FAILED" && what === "discovery") {
      const found = (err.cause as { body?: { issuer?: unknown } } | undefined)?.body?.issuer;
      if (typeof found === "string") return issuerMismatch(this.opts.config, found, e);
    }
    const answer = httpAnswer(e);
    if (
      answer !== undefined &&
      (err.code === "OAUTH_RESPONSE_IS_NOT_CONFORM" ||
        err.code === "OAUTH_RESPONSE_IS_NOT_JSON" ||
        err.code === "OAUTH_PARSE_ERROR")
    ) {
      return unexpectedAnswer(answer, what, this.opts.config, this.opts.credential !== undefined, e);
    }
    if (err.code === "OAUTH_RESPONSE_IS_NOT_CONFORM" || err.code === "OAUTH_RESPONSE_IS_NOT_JSON") {
      return new CliError(`${host} sent an unexpected answer to the ${what}`, {
        code: "provider_answer_unexpected",
        hint: "check that the issuer URL points at the realm (e.g. https://sso.example.org/realms/NAME)",
        detail: err.message,
        cause: e,
      });
    }
    return new CliError(`${what} with ${host} failed: ${err.message ?? String(e)}`, {
      code: "provider_request_failed",
      cause: e,
    });
  }
}

const DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code";

/** The provider refused the refresh token (invalid_grant): the session is over; exit 3. */
export class SessionEndedError extends CliError {
  constructor(
    message: string,
    /** The provider's error_description, made printable. */
    readonly description: string | undefined,
  ) {
    super(message, {
      exitCode: ExitCode.loginRequired,
      code: "session_expired",
      hint: "run `nix-cache-login login`",
    });
  }
}

/** RFC 8628's default, and the fastest we poll whatever the provider says (0.001 s would flood it). */
export const DEVICE_INTERVAL_MIN = 5;
/** The slowest interval a provider may ask for at first: a sign-in must stay responsive. */
export const DEVICE_INTERVAL_MAX = 60;
/** The bound for intervals grown by slow_down. */
const DEVICE_INTERVAL_SLOWEST = 300;

export function clampPollInterval(interval: number | undefined): number {
  if (interval === undefined || !Number.isFinite(interval)) return DEVICE_INTERVAL_MIN;
  return Math.min(Math.max(interval, DEVICE_INTERVAL_MIN), DEVICE_INTERVAL_MAX);
}

/**
 * The page the user is sent to must be https (http only on a loopback host of a loopback issuer):
 * the user types a code and signs in there. The URL is printed, so control characters would be
 * refused by the URL parser or percent-encoded by it.
 */
function checkedVerificationUri(raw: string, issuer: string): URL {
  return checkedEndpoint(raw, issuer, "device verification URI");
}

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  // ms is at most DEVICE_INTERVAL_SLOWEST seconds: well within setTimeout's range.
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason as Error);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason as Error);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** The latest time we keep: a Date and its ISO string stay valid and four-digit-yeared. */
export const LATEST_EXPIRY_MS = Date.UTC(9999, 11, 31, 23, 59, 59);

/**
 * `seconds` after `nowMs`, for a lifetime a provider stated: a huge one is capped at
 * LATEST_EXPIRY_MS (a Date beyond +-8.64e15 ms is invalid and toISOString throws), a value that
 * is not a finite positive number means "not stated" (null).
 */
export function expiryAfter(nowMs: number, seconds: number): Date | null {
  if (typeof seconds !== "number" || !Number.isFinite(seconds) || seconds <= 0) return null;
  return new Date(Math.min(nowMs + seconds * 1000, LATEST_EXPIRY_MS));
}

/** The `exp` of a JWT, without verifying it (only used for display and scheduling). */
export function jwtExpiry(token: string | undefined): Date | null {
  const exp = numericDateMs(token, "exp");
  return exp === undefined ? null : new Date(Math.max(0, Math.min(exp, LATEST_EXPIRY_MS)));
}

/**
 * When a token response's refresh token expires, on the provider's clock (`nowMs`): Keycloak's
 * refresh_expires_in (0 means an offline token without expiry), else the token's own `exp`.
 */
function refreshExpiry(answer: Record<string, unknown>, nowMs: number): Date | null {
  const kc = answer.refresh_expires_in;
  if (typeof kc === "number" && kc > 0) return expiryAfter(nowMs, kc);
  return jwtExpiry(typeof answer.refresh_token === "string" ? answer.refresh_token : undefined);
}

/**
 * RFC 8414 section 2: without `token_endpoint_auth_methods_supported` the default is
 * client_secret_basic. When the provider lists methods and basic is not among them but post is,
 * use post.
 */
export function chooseSecretMethod(
  metadata: Record<string, unknown> | undefined,
): "client_secret_basic" | "client_secret_post" {
  const offered = metadata?.token_endpoint_auth_methods_supported;
  if (!Array.isArray(offered) || offered.length === 0) return "client_secret_basic";
  if (offered.includes("client_secret_basic")) return "client_secret_basic";
  return offered.includes("client_secret_post") ? "client_secret_post" : "client_secret_basic";
}

/**
 * RFC 6749 section 2.3.1 form-encodes the client id and secret before Basic encoding. openid-client
 * also escapes `-`, `.`, `_`, `~` (`nix%2Dcache%2Dserver`), and providers that do not decode the
 * credentials (some answer 401 or 403 with an empty body) then see a client that does not exist.
 * Like Go's url.QueryEscape and curl, this leaves the unreserved characters (RFC 3986 section
 * 2.3: A-Z a-z 0-9 - . _ ~) as they are, which servers that decode and servers that do not both
 * accept for ids and secrets made of those characters.
 */
export function formEncodeCredential(value: string): string {
  return encodeURIComponent(value)
    .replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
    .replace(/%20/g, "+");
}

export function basicAuthorization(clientId: string, secret: string): string {
  const pair = `${formEncodeCredential(clientId)}:${formEncodeCredential(secret)}`;
  return `Basic ${Buffer.from(pair, "utf8").toString("base64")}`;
}

/** openid-client's ClientAuth hook: client_secret_basic with the encoding above. */
function clientSecretBasic(secret: string): OidcClient.ClientAuth {
  return (_as, client, _body, headers) => {
    headers.set("authorization", basicAuthorization(client.client_id, secret));
  };
}

/** A fresh Response with an answer's bytes (a body can be read once). */
function answerCopy(a: { text: string; status: number; headers: Headers; url: string }): Response {
  const copy = new Response(a.text, { status: a.status, headers: a.headers });
  Object.defineProperty(copy, "url", { value: a.url });
  return copy;
}

/** Whether two URLs name the same endpoint (query aside). */
function sameEndpoint(a: string, b: string): boolean {
  try {
    const x = new URL(a);
    const y = new URL(b);
    return x.origin === y.origin && x.pathname === y.pathname;
  } catch {
    return false;
  }
}

/** The HTTP answer an openid-client error carries (non-JSON and non-conforming answers do). */
function httpAnswer(e: unknown): Response | undefined {
  for (let cur: unknown = e, depth = 0; cur !== undefined && cur !== null && depth < 4; depth++) {
    if (cur instanceof Response) return cur;
    const r = (cur as { response?: unknown }).response;
    if (r instanceof Response) return r;
    cur = (cur as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * A trailing slash (or any other difference) between the configured issuer and the one the
 * provider names: openid-client compares them byte for byte (RFC 8414 section 3.3), and so must
 * the configuration.
 */
function issuerMismatch(config: Config, found: string, cause: unknown): CliError {
  const slashOnly = found.replace(/\/+$/, "") === config.issuer.replace(/\/+$/, "");
  return new CliError(
    `${config.path}: issuer: ${quoted(config.issuer)} does not match the issuer the provider names, ${quoted(found)}`,
    {
      exitCode: ExitCode.usage,
      code: "issuer_mismatch",
      hint: slashOnly
        ? `write issuer = ${quoted(found)} (with${found.endsWith("/") ? "" : "out"} the trailing slash), exactly as the provider names it`
        : `write issuer = ${quoted(found)} if that is the provider you mean; the issuer must be written exactly as the provider names it`,
      cause,
    },
  );
}

/** `HTTP 403 from host /path`, with a hint chosen by the status (and by which request it was). */
function unexpectedAnswer(
  res: Response,
  what: string,
  config: Config,
  serviceAccount: boolean,
  cause: unknown,
): CliError {
  let where: string;
  try {
    const u = new URL(res.url);
    where = `${u.host} ${u.pathname}`;
  } catch {
    where = new URL(config.issuer).host;
  }
  const type = res.headers.get("content-type") ?? "";
  const kind = /html/i.test(type)
    ? " (an HTML page)"
    : res.headers.get("content-length") === "0"
      ? " (empty body)"
      : "";
  const status = res.status;
  let hint: string;
  let exitCode: ExitCodeValue = ExitCode.failure;
  if (what === "discovery") {
    if (status === 404 || status === 410) {
      hint = `check issuer in ${config.path}: it must point at the realm (e.g. https://sso.example.org/realms/NAME), whose /.well-known/openid-configuration the provider serves`;
      exitCode = ExitCode.usage;
    } else if (status >= 300 && status < 400) {
      const to = res.headers.get("location");
      hint = `the provider redirects${to === null ? "" : ` to ${quoted(to)}`}: write issuer exactly as the provider serves it`;
      exitCode = ExitCode.usage;
    } else if (status === 401 || status === 403) {
      hint =
        "something in front of the provider (a proxy, firewall or login page) refuses the request: check the issuer URL and any HTTPS_PROXY";
    } else if (status >= 500) {
      hint = "the provider has a problem: try again later, or ask its administrators";
    } else {
      hint = "check that the issuer URL points at the realm (e.g. https://sso.example.org/realms/NAME)";
    }
  } else if (status === 400 || status === 401 || status === 403) {
    hint = serviceAccount
      ? `the provider refused the client without saying why: check client_id, the ${config.clientKeyFile !== undefined ? "key in client_key_file" : "secret in client_secret_file"} and token_endpoint_auth_method in ${config.path} (some providers accept only client_secret_post)`
      : `the provider refused the request without saying why: check client_id in ${config.path} and the client's settings at the provider`;
    exitCode = ExitCode.usage;
  } else if (status === 404 || status === 405) {
    hint =
      "the endpoint from the discovery document is not there: check issuer, and that the provider is fully started";
  } else if (status >= 500) {
    hint = "the provider has a problem: try again later, or ask its administrators";
  } else {
    hint = "run again with --verbose for details";
  }
  return new CliError(`${what}: HTTP ${status} from ${where}${kind}`, { exitCode, hint, cause });
}
