import { checkedEndpoint } from "../net/http.ts";

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
