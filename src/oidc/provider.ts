/**
 * One issuer as openid-client sees it: client auth, grants and revocation, with a configuration
 * from its discovery document (./discovery.ts: cached in the token state, or fetched).
 * openid-client is used here and in ./discovery.ts, ./device-poll.ts, ./client-auth.ts,
 * ./token-set.ts, ./authorization-request.ts (PKCE, state, nonce, PAR), ./token-answer.ts (the
 * answer read first: its shape, the provider's clock) and ./endpoints.ts (logout, signing keys);
 * what it throws is translated by ./protocol-errors.ts.
 */
import type * as OidcClient from "openid-client";

export type { AuthorizationRequest } from "./authorization-request.ts";
import type { TokenEndpointAuthMethod } from "../config/rules.ts";
import type { Env } from "../os/env.ts";
import { CliError } from "../errors.ts";
import { makeFetch, neverReachedServer, type Logger } from "../net/http.ts";
import { authMethod, clientAuth } from "./client-auth.ts";
import type { ClientCredential } from "./client-key.ts";
import { endpointNotFound, translateError } from "./protocol-errors.ts";
import type { CachedDiscovery, ProviderSettings } from "./settings.ts";
import { fetchDiscovery, usableDiscovery } from "./discovery.ts";
import { endSession, fetchSigningKeys } from "./endpoints.ts";
import {
  answerCopy,
  offsetFromDate,
  offsetFromIat,
  replayFrom,
  replayOffset,
  sameEndpoint,
  tokenAnswerBody,
  type TokenAnswer,
} from "./token-answer.ts";
import {
  mustPush,
  newAuthorizationRequest,
  type AuthorizationRequest,
  type SignInParts,
} from "./authorization-request.ts";
import {
  refreshExpiry,
  tokenSet,
  type RotatedRefreshToken,
  type TokenResponse,
  type TokenSet,
} from "./token-set.ts";

type Lib = typeof OidcClient;
let lib: Promise<Lib> | undefined;
const loadLib = (): Promise<Lib> => (lib ??= import("openid-client"));

export interface ProviderOptions {
  settings: ProviderSettings;
  env: Env;
  log: Logger;
  now: () => Date;
  /** Present in service-account mode. */
  credential?: ClientCredential | undefined;
  /** The cached discovery document, if any. */
  discovery?: CachedDiscovery | undefined;
  /** See Context's onSlowRequest. */
  onSlowRequest?: ((host: string) => void) | undefined;
  /** The provider's clock minus ours, as far as known before any request (ms). */
  clockSkewMs?: number | undefined;
}

export class Provider {
  private configuration: OidcClient.Configuration | undefined;
  /** Set when discovery was (re)fetched: the caller saves it with the token state. */
  discovery: CachedDiscovery | undefined;
  private discoveryFromCache = false;
  readonly settings: ProviderSettings;
  /** --verbose lines (never a secret). */
  readonly log: Logger;
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
  /** The latest 200 answer of the token endpoint, as read. */
  private lastTokenAnswer: TokenAnswer | undefined;

  constructor(private readonly opts: ProviderOptions) {
    this.discovery = opts.discovery;
    this.settings = opts.settings;
    this.log = opts.log;
  }

  get host(): string {
    return new URL(this.settings.issuer).host;
  }

  /** The token endpoint authentication method in use: configured, else chosen from discovery. */
  authMethod(metadata: Record<string, unknown> | undefined): TokenEndpointAuthMethod | "none" {
    return authMethod(this.opts.credential, this.settings.tokenEndpointAuthMethod, metadata);
  }

  private clientAuth(l: Lib, metadata: Record<string, unknown> | undefined): Promise<OidcClient.ClientAuth> {
    const { credential } = this.opts;
    const { tokenEndpointAuthMethod: configured, configPath } = this.settings;
    return clientAuth(l, { credential, configured, configPath, log: this.log }, metadata);
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
    const base = makeFetch(this.opts.env, this.log, this.opts.onSlowRequest);
    return (async (url: string, init: RequestInit) => {
      const res = await base(url, init);
      // A missing, unreadable or implausible `Date` is no clock reading: the last one stands.
      const dateOffset = offsetFromDate(Date.parse(res.headers.get("date") ?? ""), this.opts.now());
      if (dateOffset !== undefined) this.dateOffsetMs = dateOffset;
      if ((init.method ?? "GET").toUpperCase() !== "POST" || res.status !== 200) return res;
      const endpoint = this.discovery?.metadata.token_endpoint;
      if (typeof endpoint !== "string" || !sameEndpoint(url, endpoint)) return res;
      return this.inspectTokenAnswer(res, url);
    }) as OidcClient.CustomFetch;
  }

  private async inspectTokenAnswer(res: Response, url: string): Promise<Response> {
    const text = await res.text();
    const answer = tokenAnswerBody(text, url, this.what);
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
   * Provider minus local time for an answer received at `receivedAt`: its `Date` header; without
   * one (Keycloak sends none), the access token's `iat` (a provider may hand out a cached token,
   * so `iat` comes second).
   */
  private answerOffset(accessToken: string | undefined, receivedAt: Date): number | undefined {
    if (this.dateOffsetMs !== undefined) return this.dateOffsetMs;
    return offsetFromIat(accessToken, receivedAt);
  }

  /**
   * When openid-client refused a token answer for its ID token's timestamps and the answer itself
   * showed that our clock is off (its `Date` header, else its access token's `iat`), the same
   * answer is checked once more on the provider's clock: a configuration whose clockSkew is the
   * measured offset, whose fetch hands back the answer already read (the token endpoint is not
   * asked again: a grant is never sent twice) and whose key set is the one already fetched. Every
   * check is still openid-client's.
   */
  private async replayOnProviderClock<T>(
    l: Lib,
    e: unknown,
    op: (l: Lib, c: OidcClient.Configuration) => Promise<T>,
  ): Promise<T> {
    const answer = this.lastTokenAnswer;
    const skew = replayOffset(e, answer, this.usedSkewSec);
    if (answer === undefined || skew === undefined || this.configuration === undefined) throw e;
    this.log(`the answer's timestamps are off by the clock: checking it on the provider's clock (${skew} s)`);
    const c = new l.Configuration(
      this.configuration.serverMetadata(),
      this.settings.clientId,
      { [l.clockSkew]: skew },
      await this.clientAuth(l, this.discovery?.metadata),
    );
    this.configure(l, c);
    replayFrom(l, c, this.configuration, answer, String(this.discovery?.metadata.token_endpoint));
    return op(l, c);
  }

  private configure(l: Lib, c: OidcClient.Configuration): OidcClient.Configuration {
    c.timeout = this.settings.timeoutSeconds;
    c[l.customFetch] = this.fetcher();
    if (new URL(this.settings.issuer).protocol === "http:") l.allowInsecureRequests(c);
    return c;
  }

  private async discover(force: boolean): Promise<OidcClient.Configuration> {
    const l = await loadLib();
    const { settings } = this;
    const cached = force
      ? undefined
      : usableDiscovery(this.discovery, settings.issuer, this.opts.now(), this.log);
    this.discoveryFromCache = cached !== undefined;
    if (cached === undefined) this.log(`discovering ${settings.issuer}`);
    const doc =
      cached ??
      (await fetchDiscovery(l, settings, {
        fetch: this.fetcher(),
        now: () => this.opts.now(),
        translate: (e) => this.translate(e, "discovery"),
      }));
    this.discovery = doc;
    const c = new l.Configuration(
      doc.metadata as unknown as OidcClient.ServerMetadata,
      settings.clientId,
      this.clientMetadata(l),
      await this.clientAuth(l, doc.metadata),
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
  async withConfig<T>(
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
        kind === "other" &&
        ((e instanceof l.ClientError && e.code === "OAUTH_RESPONSE_IS_NOT_CONFORM") || endpointNotFound(e));
      if (this.discoveryFromCache && (neverReachedServer(e) || endpointGone)) {
        this.log(`${what} failed with a cached discovery document; discovering again`);
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
   * follows. What can still refuse the answer after that: the token type, openid-client's checks
   * of the ID token (`iss`, `aud`, `iat`/`exp`/`nbf` against the provider's clock; not its
   * signature: non-repudiation checks are off here, as the key set is not kept between runs and
   * would cost a request per renewal), then the caller's: the ID token's `sub` against the
   * signed-in one (OIDC Core 12.2, ../core/renew-under-lock.ts; nothing else of it is used), and
   * our own checks of the access token (characters, size) and the netrc write. All of these
   * leave the saved refresh token behind, which is safe: it came from the token endpoint over the
   * same connection we trust for every token, in answer to our own refresh token, and the next
   * run that uses it goes through the same checks again before any access token reaches the netrc.
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
    const scope = this.settings.scopes;
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
        throw new CliError(
          "provider_no_revocation",
          `${this.host} advertises neither a revocation nor a logout endpoint`,
        );
      }
      await endSession(meta.end_session_endpoint, refreshToken, {
        settings: this.settings,
        host: this.host,
        fetch: makeFetch(this.opts.env, this.log, this.opts.onSlowRequest),
      });
      return "logged-out" as const;
    });
  }

  /** What every authorization request of this client carries, and how its errors are told. */
  private signInParts(redirectUri: string): SignInParts {
    return {
      redirectUri,
      scope: this.loginScope(),
      log: this.log,
      translate: (e) => this.translate(e, "pushed authorization request", { signIn: true }),
    };
  }

  /** The scopes a user sign-in asks for: the configured ones, always with `openid` (we need the ID token). */
  loginScope(): string {
    return [...new Set(["openid", ...(this.settings.scopes ?? [])])].join(" ");
  }

  /**
   * Starts an authorization code request (RFC 6749 4.1) with PKCE S256 (RFC 7636), `state` and
   * `nonce`. The URL carries no secret (the verifier stays here), so it may be printed and logged.
   * Pushed (RFC 9126) when `pushed` is set or the discovery document requires it
   * (`require_pushed_authorization_requests`), through openid-client's PAR support.
   */
  authorizationRequest(redirectUri: string, opts: { pushed?: boolean } = {}): Promise<AuthorizationRequest> {
    return this.withConfig("authorization request", (l, c) => {
      const pushed = mustPush(c.serverMetadata(), this.host, opts.pushed === true);
      return newAuthorizationRequest(l, c, this.signInParts(redirectUri), { pushed });
    });
  }

  /**
   * Asks the authorization endpoint, before a browser opens, whether it knows this client and
   * redirect URI (./client-check.ts): the same request as authorizationRequest, with prompt=none
   * and a state, nonce and PKCE verifier that are thrown away. "par_required" when the endpoint
   * answers that the request must be pushed (RFC 9126; Keycloak's "Pushed authorization request
   * required"): the sign-in then pushes its request.
   */
  checkClient(
    redirectUri: string,
    register: string,
    clientIdFrom = `client_id in ${this.settings.configPath}`,
  ): Promise<"ok" | "par_required"> {
    return this.withConfig("client check", async (l, c) => {
      const meta = c.serverMetadata();
      if (meta.authorization_endpoint === undefined) return "ok";
      // Its verifier and nonce are dropped here: a code issued to this request is of no use. A
      // provider that takes only pushed requests gets this one pushed too (its request_uri is
      // spent by the check).
      const pushed =
        meta.require_pushed_authorization_requests === true &&
        meta.pushed_authorization_request_endpoint !== undefined;
      const check = await newAuthorizationRequest(l, c, this.signInParts(redirectUri), {
        pushed,
        extra: { prompt: "none" },
      });
      const { checkClient } = await import("./client-check.ts");
      const verdict = await checkClient({
        url: await check.authorize(),
        state: check.state,
        issuer: this.settings.issuer,
        clientId: this.settings.clientId,
        redirectUri,
        register,
        clientIdFrom,
        fetch: makeFetch(this.opts.env, this.log, this.opts.onSlowRequest),
        log: this.log,
        timeoutSeconds: this.settings.timeoutSeconds,
      });
      return pushed ? "par_required" : verdict;
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
    const jwks = await fetchSigningKeys(uri, {
      settings: this.settings,
      fetch: makeFetch(this.opts.env, this.log, this.opts.onSlowRequest),
    });
    if (jwks === undefined) return;
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
            throw this.translate(e, "code exchange", { signIn: true });
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
   * The token set of a token endpoint answer received now, its expiries on the provider's clock:
   * its `exp` is, and its `expires_in` counts from its own time.
   */
  tokenSet(res: TokenResponse): TokenSet {
    const receivedAt = this.opts.now();
    const clockOffsetMs = this.answerOffset(res.access_token, receivedAt);
    return {
      ...tokenSet(res, receivedAt.getTime() + (clockOffsetMs ?? 0), this.settings.defaultTokenLifetime),
      clockOffsetMs,
      receivedAt,
    };
  }

  /** What openid-client threw, as a CliError (./protocol-errors.ts). */
  translate(e: unknown, what: string, o: { signIn?: boolean } = {}): CliError {
    return translateError(e, {
      what,
      host: this.host,
      settings: this.settings,
      serviceAccount: this.opts.credential !== undefined,
      authMethod: this.authMethod(this.discovery?.metadata),
      signIn: o.signIn === true,
    });
  }
}
