/**
 * The private key of a private_key_jwt client (RFC 7523 section 2.2; Keycloak's "Signed JWT"
 * client authenticator), from the text of client_key_file.
 */
import { createPrivateKey, webcrypto, type JsonWebKey, type KeyObject } from "node:crypto";
import type { Config } from "../config/load.ts";
import { CliError, ExitCode } from "../errors.ts";

/**
 * What a service account proves itself with: a shared secret, or a private key (private_key_jwt).
 * `key` is the key parsed from `keyText` once it has been (parseClientKey below).
 */
export type ClientCredential =
  { secret: string } | { keyText: string; keyFile: string; key?: ClientKey | undefined };

export interface ClientKey {
  privateKey: KeyObject;
  kid: string | undefined;
  alg: "RS256" | "ES256" | "ES384" | "EdDSA";
}

/** The JWS algorithm for a private key, or undefined when we do not sign with that kind of key. */
export function signingAlgorithm(key: KeyObject): ClientKey["alg"] | undefined {
  const type = key.asymmetricKeyType;
  if (type === "rsa") return "RS256";
  if (type === "ed25519") return "EdDSA";
  if (type === "ec") {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === "prime256v1" || curve === "P-256") return "ES256";
    if (curve === "secp384r1" || curve === "P-384") return "ES384";
  }
  return undefined;
}

/**
 * PEM (PKCS#8, PKCS#1 or SEC1, as openssl and Keycloak's "Generate new keys" write them) or a JWK,
 * whose `kid` is then sent (for a client whose keys Keycloak takes from a JWKS URL). RSA keys sign
 * with RS256, EC keys with ES256/ES384, Ed25519 keys with EdDSA.
 */
export function parseClientKey(config: Pick<Config, "path">, keyText: string, keyFile: string): ClientKey {
  let privateKey: KeyObject;
  let kid: string | undefined;
  try {
    if (keyText.startsWith("{")) {
      const jwk = JSON.parse(keyText) as JsonWebKey & { kid?: unknown };
      kid = typeof jwk.kid === "string" && jwk.kid !== "" ? jwk.kid : undefined;
      privateKey = createPrivateKey({ key: jwk, format: "jwk" });
    } else {
      privateKey = createPrivateKey({ key: keyText, format: "pem" });
    }
  } catch {
    throw new CliError(
      "client_key_invalid",
      `client_key_file ${keyFile}: not a private key (PEM or JWK expected)`,
      {
        exitCode: ExitCode.usage,
        hint: `put the client's private key there (e.g. made with \`openssl genpkey -algorithm RSA\`), or fix client_key_file in ${config.path}`,
      },
    );
  }
  const alg = signingAlgorithm(privateKey);
  if (alg === undefined) {
    const curve = privateKey.asymmetricKeyDetails?.namedCurve;
    throw new CliError(
      "client_key_unsupported",
      `client_key_file ${keyFile}: a ${privateKey.asymmetricKeyType ?? "unknown"} key${curve !== undefined ? ` on ${curve}` : ""} cannot sign a client assertion`,
      {
        exitCode: ExitCode.usage,
        hint: "use an RSA, EC P-256/P-384 or Ed25519 key",
      },
    );
  }
  return { privateKey, kid, alg };
}

/** The key as the WebCrypto key openid-client signs client assertions with. */
export function webCryptoKey(key: ClientKey): Promise<webcrypto.CryptoKey> {
  const der = key.privateKey.export({ format: "der", type: "pkcs8" });
  const algorithm =
    key.alg === "RS256"
      ? { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }
      : key.alg === "ES256"
        ? { name: "ECDSA", namedCurve: "P-256" }
        : key.alg === "ES384"
          ? { name: "ECDSA", namedCurve: "P-384" }
          : { name: "Ed25519" };
  return webcrypto.subtle.importKey("pkcs8", der, algorithm, false, ["sign"]);
}
