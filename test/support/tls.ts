/** A self-signed TLS certificate for 127.0.0.1, made at test start (never committed). */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";

/**
 * Writes tls-key.pem and tls-cert.pem into `dir`. An EC key is made in milliseconds; the IP SAN is
 * what clients (curl, Node, mod_auth_openidc) verify for https://127.0.0.1.
 */
export async function makeTlsCertificate(dir: string): Promise<{ keyPath: string; certPath: string }> {
  const keyPath = join(dir, "tls-key.pem");
  const certPath = join(dir, "tls-cert.pem");
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
