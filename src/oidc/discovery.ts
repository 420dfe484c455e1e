/**
 * The issuer's discovery document: the one cached with the token state while it may be used, else
 * the provider's, fetched; only the fields we read are kept, and every endpoint is checked before
 * any request goes to it.
 */
import type * as OidcClient from "openid-client";

import type { CliError } from "../errors.ts";
import { checkedEndpoint, type Logger } from "../net/http.ts";
import type { CachedDiscovery, ProviderSettings } from "./settings.ts";

/** A discovery document younger than this is used without asking the provider again. */
export const DISCOVERY_MAX_AGE_MS = 24 * 60 * 60 * 1000;

/**
 * The cached document, if it may be used: this issuer's, fetched less than DISCOVERY_MAX_AGE_MS
 * ago (one "fetched" in the future was fetched while the clock was ahead: its age is unknown), and
 * its endpoints pass checkEndpoints (one that does not, saved by an older version or by hand, is
 * not used: the provider is asked for its document again).
 */
export function usableDiscovery(
  cached: CachedDiscovery | undefined,
  issuer: string,
  now: Date,
  log: Logger,
): CachedDiscovery | undefined {
  if (cached === undefined || cached.metadata.issuer !== issuer) return undefined;
  const age = now.getTime() - Date.parse(cached.fetched_at);
  if (!(age >= 0 && age < DISCOVERY_MAX_AGE_MS)) return undefined;
  try {
    checkEndpoints(cached.metadata, issuer);
    return cached;
  } catch (e) {
    log(`not using the cached discovery document: ${(e as Error).message}`);
    return undefined;
  }
}

/**
 * The provider's document, asked for now (its time is taken when it has come) with no client authentication (the method may depend on
 * what the document offers); what openid-client throws goes through `translate`.
 */
export async function fetchDiscovery(
  l: typeof OidcClient,
  settings: ProviderSettings,
  o: { fetch: OidcClient.CustomFetch; now: () => Date; translate: (e: unknown) => CliError },
): Promise<CachedDiscovery> {
  const issuer = new URL(settings.issuer);
  const found = await l
    .discovery(issuer, settings.clientId, undefined, l.None(), {
      execute: issuer.protocol === "http:" ? [l.allowInsecureRequests] : [],
      timeout: settings.timeoutSeconds,
      [l.customFetch]: o.fetch,
    })
    .catch((e: unknown) => {
      throw o.translate(e);
    });
  // Only what we use is kept: a document of megabytes would be stored and rewritten at every renewal.
  const metadata = keptDiscovery(found.serverMetadata() as unknown as Record<string, unknown>);
  // Before any request to them (and before the document is kept): see checkEndpoints.
  checkEndpoints(metadata, settings.issuer);
  return { fetched_at: o.now().toISOString(), metadata };
}

/**
 * The discovery fields the tool (and openid-client, for our grants) reads: only these are kept in
 * the token state, each within bounds, so that a document of megabytes is not stored and
 * rewritten at every renewal (issue 20).
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

/** No endpoint URL is longer; no list of methods or algorithms has more entries or longer names. */
const MAX_STRING = 2048;
const MAX_LIST = 64;
const MAX_LIST_ITEM = 256;

/** The document cut down to DISCOVERY_FIELDS; a value out of bounds is left out. */
export function keptDiscovery(doc: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of DISCOVERY_FIELDS) {
    const v = doc[key];
    if (typeof v === "boolean") out[key] = v;
    else if (typeof v === "string" && v.length <= MAX_STRING) out[key] = v;
    else if (
      Array.isArray(v) &&
      v.length <= MAX_LIST &&
      v.every((x) => typeof x === "string" && x.length <= MAX_LIST_ITEM)
    ) {
      out[key] = v;
    }
  }
  return out;
}

/**
 * The addresses among DISCOVERY_FIELDS that openid-client or we send requests to (or a browser):
 * for a loopback issuer openid-client is told to allow plain http (allowInsecureRequests), which
 * it then allows to any host, so every one of them is held to checkedEndpoint's rule first:
 * https, or http on a loopback host (a client secret or refresh token in clear to another host
 * otherwise).
 */
const ENDPOINT_FIELDS: Record<string, string> = {
  authorization_endpoint: "sign-in endpoint (authorization_endpoint)",
  token_endpoint: "token endpoint (token_endpoint)",
  jwks_uri: "signing key set (jwks_uri)",
  revocation_endpoint: "revocation endpoint (revocation_endpoint)",
  end_session_endpoint: "logout endpoint (end_session_endpoint)",
  device_authorization_endpoint: "device authorization endpoint (device_authorization_endpoint)",
  pushed_authorization_request_endpoint:
    "pushed authorization request endpoint (pushed_authorization_request_endpoint)",
};

/** Throws checkedEndpoint's error for the first endpoint of `metadata` that breaks its rule. */
export function checkEndpoints(metadata: Record<string, unknown>, issuer: string): void {
  for (const [field, what] of Object.entries(ENDPOINT_FIELDS)) {
    if (metadata[field] !== undefined) checkedEndpoint(metadata[field], issuer, what);
  }
}
