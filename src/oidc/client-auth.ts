/**
 * How the client proves itself at the token endpoint: nothing (a public client signing in a user),
 * a secret (client_secret_basic or client_secret_post), or a signed JWT (private_key_jwt).
 */
import type * as OidcClient from "openid-client";
import type { TokenEndpointAuthMethod } from "../config/rules.ts";
import type { Logger } from "../net/http.ts";
import { parseClientKey, webCryptoKey, type ClientCredential } from "./client-key.ts";

type Lib = typeof OidcClient;

/** The token endpoint authentication method in use: configured, else chosen from discovery. */
export function authMethod(
  credential: ClientCredential | undefined,
  configured: TokenEndpointAuthMethod | undefined,
  metadata: Record<string, unknown> | undefined,
): TokenEndpointAuthMethod | "none" {
  if (credential === undefined) return "none";
  if ("keyText" in credential) return "private_key_jwt";
  return configured ?? chooseSecretMethod(metadata);
}

/** openid-client's ClientAuth for the credential; `configPath` names the file in a key's errors. */
export async function clientAuth(
  l: Lib,
  o: {
    credential: ClientCredential | undefined;
    configured: TokenEndpointAuthMethod | undefined;
    configPath: string;
    log: Logger;
  },
  metadata: Record<string, unknown> | undefined,
): Promise<OidcClient.ClientAuth> {
  const cred = o.credential;
  if (cred === undefined) return l.None();
  if ("keyText" in cred) {
    const parsed = cred.key ?? parseClientKey({ path: o.configPath }, cred.keyText, cred.keyFile);
    const key = (await webCryptoKey(parsed)) as OidcClient.CryptoKey;
    o.log(`client authentication: private_key_jwt (${parsed.alg})`);
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
  const method = authMethod(cred, o.configured, metadata);
  o.log(`client authentication: ${method}`);
  return method === "client_secret_post" ? l.ClientSecretPost(cred.secret) : clientSecretBasic(cred.secret);
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
