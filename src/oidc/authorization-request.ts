/**
 * One authorization code request (RFC 6749 4.1) with PKCE S256 (RFC 7636), `state` and `nonce`,
 * built by openid-client, optionally pushed (RFC 9126). ./provider.ts decides when to push.
 */
import type * as OidcClient from "openid-client";
import { CliError } from "../errors.ts";
import type { Logger } from "../net/http.ts";

/** One authorization code request; the verifier and nonce never leave this process. */
export interface AuthorizationRequest {
  /**
   * The URL to send the browser to. With PAR (RFC 9126) the parameters are pushed first, and the
   * URL carries only the request_uri the provider gave back: `authorize()` pushes them when the
   * browser arrives (a request_uri lives briefly, 60 s at Keycloak), `url` is then undefined.
   */
  url: URL | undefined;
  authorize(): Promise<URL>;
  /** Sent as a pushed authorization request (RFC 9126). */
  pushed: boolean;
  /** The provider's authorization endpoint, for --verbose. */
  endpoint: string;
  redirectUri: string;
  state: string;
  nonce: string;
  codeVerifier: string;
}

/** What every authorization request of one client carries, and how its errors are told. */
export interface SignInParts {
  redirectUri: string;
  scope: string;
  log: Logger;
  /** What openid-client threw while pushing the request, as a CliError. */
  translate: (e: unknown) => CliError;
}

/** A fresh verifier, state and nonce, and the authorization URL (or the push) that carries them. */
export async function newAuthorizationRequest(
  l: typeof OidcClient,
  c: OidcClient.Configuration,
  parts: SignInParts,
  o: { pushed?: boolean; extra?: Record<string, string> } = {},
): Promise<AuthorizationRequest> {
  const { redirectUri } = parts;
  const codeVerifier = l.randomPKCECodeVerifier();
  const state = l.randomState();
  const nonce = l.randomNonce();
  const params = {
    response_type: "code",
    redirect_uri: redirectUri,
    scope: parts.scope,
    state,
    nonce,
    code_challenge: await l.calculatePKCECodeChallenge(codeVerifier),
    code_challenge_method: "S256",
    ...o.extra,
  };
  const pushed = o.pushed === true;
  const url = pushed ? undefined : l.buildAuthorizationUrl(c, params);
  const authorize = (): Promise<URL> => {
    if (url !== undefined) return Promise.resolve(url);
    parts.log("pushing the authorization request (RFC 9126)");
    return l.buildAuthorizationUrlWithPAR(c, params).catch((e: unknown) => {
      throw parts.translate(e);
    });
  };
  const endpoint = String(c.serverMetadata().authorization_endpoint);
  return { url, authorize, pushed, endpoint, redirectUri, state, nonce, codeVerifier };
}

/**
 * Whether the request is pushed (RFC 9126): when asked to, or when the discovery document requires
 * it (`require_pushed_authorization_requests`). Throws when an endpoint it needs is not advertised.
 */
export function mustPush(meta: OidcClient.ServerMetadata, host: string, asked: boolean): boolean {
  if (meta.authorization_endpoint === undefined) {
    throw new CliError("provider_no_authorization_endpoint", `${host} advertises no authorization endpoint`, {
      hint: "check that the issuer URL points at the realm",
    });
  }
  const pushed = asked || meta.require_pushed_authorization_requests === true;
  if (pushed && meta.pushed_authorization_request_endpoint === undefined) {
    throw new CliError(
      "provider_no_par_endpoint",
      `${host} requires pushed authorization requests (RFC 9126) but advertises no endpoint for them`,
      { hint: "check the provider's discovery document (pushed_authorization_request_endpoint)" },
    );
  }
  return pushed;
}
