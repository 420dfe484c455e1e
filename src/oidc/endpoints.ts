/**
 * The two requests ./provider.ts sends itself rather than through openid-client: the logout
 * endpoint as a revocation fallback, and the signing keys fetched ahead of the callback. Both
 * endpoints must be https (unless the issuer is loopback) and no redirect is followed.
 */
import type * as OidcClient from "openid-client";
import { CliError } from "../errors.ts";
import { checkedEndpoint } from "../net/http.ts";
import type { ProviderSettings } from "./settings.ts";

type Fetch = (url: string, init: RequestInit) => Promise<Response>;

/**
 * Ends the session at the logout endpoint with the refresh token (Keycloak's non-browser logout),
 * for a provider without a revocation endpoint. A redirect is refused: following it would send the
 * refresh token elsewhere.
 */
export async function endSession(
  endSessionEndpoint: string,
  refreshToken: string,
  o: { settings: ProviderSettings; host: string; fetch: Fetch },
): Promise<void> {
  const endpoint = checkedEndpoint(endSessionEndpoint, o.settings.issuer, "logout endpoint");
  const body = new URLSearchParams({ client_id: o.settings.clientId, refresh_token: refreshToken });
  const res = await o.fetch(endpoint.href, {
    method: "POST",
    body,
    redirect: "manual",
    signal: AbortSignal.timeout(o.settings.timeoutSeconds * 1000),
  });
  if (res.status >= 300 && res.status < 400) {
    throw new CliError(
      "provider_logout_redirect",
      `${o.host} answered the logout request with a redirect (HTTP ${res.status}), which is not followed: it would send the refresh token elsewhere`,
    );
  }
  if (!res.ok && res.status !== 204) {
    throw new CliError(
      "provider_logout_failed",
      `${o.host} answered the logout request with HTTP ${res.status}`,
    );
  }
}

/** The provider's key set, or undefined when it did not answer with one (openid-client fetches it then). */
export async function fetchSigningKeys(
  jwksUri: string,
  o: { settings: ProviderSettings; fetch: Fetch },
): Promise<OidcClient.JWKS | undefined> {
  const endpoint = checkedEndpoint(jwksUri, o.settings.issuer, "signing key set (jwks_uri)");
  const res = await o.fetch(endpoint.href, {
    method: "GET",
    redirect: "manual",
    headers: { accept: "application/json" },
    signal: AbortSignal.timeout(o.settings.timeoutSeconds * 1000),
  });
  if (!res.ok) return undefined;
  const jwks = (await res.json()) as { keys?: unknown };
  return Array.isArray(jwks.keys) ? (jwks as OidcClient.JWKS) : undefined;
}
