/**
 * What the commands share without the network: the configuration, the token state, the client
 * secret, and whether the current token is still good. Only files are read here, synchronously;
 * `status`, `--help` and a timer's `refresh --min-valid` need nothing else, so they start fast.
 * Turning new tokens into files is in ./tokens.ts.
 */
import { createPrivateKey, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { loadConfig, type Config } from "./config/load.ts";
import { stateDir } from "./config/paths.ts";
import { verbose, type Context } from "./context.ts";
import { parseDuration } from "./duration.ts";
import { CliError, ExitCode } from "./errors.ts";
import { netrcHolds } from "./netrc/read.ts";
import { StateStore, type TokenState } from "./store/state.ts";

export interface Session {
  config: Config;
  store: StateStore;
}

export async function openSession(ctx: Context): Promise<Session> {
  const config = await loadConfig(ctx.configFlag, ctx.env);
  verbose(ctx)(`using configuration ${config.path} (${config.source})`);
  return { config, store: new StateStore(stateDir(ctx.env), config.issuer, config.clientId) };
}

/** What a service account proves itself with: a shared secret, or a private key (private_key_jwt). */
export type ClientCredential = { secret: string } | { privateKey: KeyObject; kid: string | undefined };

function readPrivateFile(config: Config, key: "client_secret_file" | "client_key_file", file: string): string {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new CliError(
      `${key} ${file}: ${code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : (code ?? (e as Error).message)}`,
      {
        exitCode: code === "ENOENT" ? ExitCode.usage : ExitCode.failure,
        hint:
          code === "EACCES"
            ? "run as a user that can read it (the file should stay private)"
            : `fix ${key} in ${config.path}`,
      },
    );
  }
  const trimmed = text.replace(/\s+$/, "");
  if (trimmed === "") {
    throw new CliError(`${key} ${file}: the file is empty`, { exitCode: ExitCode.usage });
  }
  return trimmed;
}

function notServiceAccount(config: Config): CliError {
  return new CliError(
    `${config.path}: neither client_secret_file nor client_key_file is set, so this configuration is for user sign-in`,
    {
      exitCode: ExitCode.usage,
      hint: "set client_secret_file (or client_key_file) for a service account, or use `nix-cache-login login`",
    },
  );
}

export function readClientSecret(config: Config): string {
  if (config.clientSecretFile === undefined) throw notServiceAccount(config);
  return readPrivateFile(config, "client_secret_file", config.resolveClientSecretFile());
}

/**
 * The private key of a private_key_jwt client: PEM (PKCS#8, PKCS#1 or SEC1, as Keycloak's
 * "Generate new keys" and openssl write them) or a JWK (whose `kid` is then sent, for a client
 * whose keys Keycloak takes from a JWKS URL). RSA keys sign with RS256, EC keys with ES256/ES384,
 * Ed25519 keys with EdDSA.
 */
export function readClientKey(config: Config): { privateKey: KeyObject; kid: string | undefined } {
  if (config.clientKeyFile === undefined) throw notServiceAccount(config);
  const file = config.resolveClientKeyFile();
  const text = readPrivateFile(config, "client_key_file", file);
  let privateKey: KeyObject;
  let kid: string | undefined;
  try {
    if (text.startsWith("{")) {
      const jwk = JSON.parse(text) as Record<string, unknown>;
      kid = typeof jwk.kid === "string" && jwk.kid !== "" ? jwk.kid : undefined;
      privateKey = createPrivateKey({ key: jwk as import("node:crypto").JsonWebKey, format: "jwk" });
    } else {
      privateKey = createPrivateKey({ key: text, format: "pem" });
    }
  } catch {
    throw new CliError(`client_key_file ${file}: not a private key (PEM or JWK expected)`, {
      exitCode: ExitCode.usage,
      hint: `put the client's private key there (e.g. \`openssl genpkey -algorithm RSA -out ${file}\`), or fix client_key_file in ${config.path}`,
    });
  }
  if (signingAlgorithm(privateKey) === undefined) {
    throw new CliError(
      `client_key_file ${file}: a ${privateKey.asymmetricKeyType ?? "unknown"} key${privateKey.asymmetricKeyDetails?.namedCurve !== undefined ? ` on ${privateKey.asymmetricKeyDetails.namedCurve}` : ""} cannot sign a client assertion`,
      { exitCode: ExitCode.usage, hint: "use an RSA, EC P-256/P-384 or Ed25519 key" },
    );
  }
  return { privateKey, kid };
}

/** The JWS algorithm for a private key, or undefined when we do not sign with that kind of key. */
export function signingAlgorithm(key: KeyObject): "RS256" | "ES256" | "ES384" | "EdDSA" | undefined {
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

/** The service account's credential: the key for private_key_jwt, else the secret. */
export function readClientCredential(config: Config): ClientCredential {
  return config.clientKeyFile !== undefined ? readClientKey(config) : { secret: readClientSecret(config) };
}

/** The command that gets a fresh token: for hints (`status`) and fixes (`doctor`). */
export function renewCommand(config: Config, state: TokenState | undefined, now: Date): string {
  if (config.mode === "service-account") return "nix-cache-login service-account";
  const refreshUsable =
    state?.refresh_token !== undefined &&
    (state.refresh_token_expires_at === null ||
      state.refresh_token_expires_at === undefined ||
      new Date(state.refresh_token_expires_at).getTime() > now.getTime());
  return refreshUsable ? "nix-cache-login refresh" : "nix-cache-login login";
}

/** Seconds the current access token stays valid (negative when expired); undefined when unknown. */
export function remainingValidity(state: TokenState | undefined, now: Date): number | undefined {
  if (state?.access_token_expires_at === undefined) return undefined;
  return (new Date(state.access_token_expires_at).getTime() - now.getTime()) / 1000;
}

/** Whether the netrc holds the stored access token and it stays valid `needed` more seconds. */
export function tokenGood(s: Session, state: TokenState | undefined, needed: number, now: Date): boolean {
  const left = remainingValidity(state, now);
  if (left === undefined || left < needed) return false;
  return netrcHolds(s.config.netrcPath, s.config.machine, state?.access_token).holds;
}

export interface Renewal {
  session: Session;
  credential: ClientCredential | undefined;
  /** The state as read before the lock. */
  seen: TokenState | undefined;
  minValid: number | undefined;
}

/**
 * What `refresh` and `service-account` do before any request: load and check everything, and
 * settle `--min-valid` from the files alone ("fresh": nothing to do). Timers call this every few
 * minutes, so it is also run before the network code is even loaded.
 */
export async function beginRenewal(
  ctx: Context,
  opts: { minValid?: string | undefined },
  grant: "refresh" | "client-credentials",
): Promise<Renewal | "fresh"> {
  const minValid = opts.minValid === undefined ? undefined : parseDuration(opts.minValid, "--min-valid");
  const session = await openSession(ctx);
  const mode = session.config.mode;
  // `service-account` with a user configuration fails here, naming the missing key.
  const credential =
    mode === "service-account" || grant === "client-credentials"
      ? readClientCredential(session.config)
      : undefined;
  const seen = session.store.read();
  if (minValid !== undefined && tokenGood(session, seen, minValid, ctx.now())) {
    verbose(ctx)(`the access token stays valid for at least ${opts.minValid}; nothing to do`);
    return "fresh";
  }
  return { session, credential, seen, minValid };
}
