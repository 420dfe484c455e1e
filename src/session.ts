/**
 * What the commands share without the network: the configuration, the token state, the client
 * secret, and whether the current token is still good. Only files are read here, synchronously;
 * `status`, `--help` and a timer's `refresh --min-valid` need nothing else, so they start fast.
 * Turning new tokens into files is in ./tokens.ts.
 */
import { readFileSync } from "node:fs";
import { loadConfig, type Config } from "./config/load.ts";
import { stateDir } from "./config/paths.ts";
import { verbose, type Context } from "./context.ts";
import { parseDuration } from "./duration.ts";
import { CliError, ExitCode } from "./errors.ts";
import { netrcHolds } from "./netrc/read.ts";
import { recordTokens } from "./result.ts";
import { CorruptStateError, StateStore, type TokenState } from "./store/state.ts";

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
export type ClientCredential = { secret: string } | { keyText: string; keyFile: string };

function readPrivateFile(
  config: Config,
  key: "client_secret_file" | "client_key_file",
  file: string,
): string {
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
 * The text of a private_key_jwt client's key file; ./oidc/client-key.ts parses it (node:crypto is
 * too heavy for the files-only start-up path).
 */
export function readClientKeyText(config: Config): { keyText: string; keyFile: string } {
  if (config.clientKeyFile === undefined) throw notServiceAccount(config);
  const keyFile = config.resolveClientKeyFile();
  return { keyText: readPrivateFile(config, "client_key_file", keyFile), keyFile };
}

/** The service account's credential: the key for private_key_jwt, else the secret. */
export function readClientCredential(config: Config): ClientCredential {
  return config.clientKeyFile !== undefined
    ? readClientKeyText(config)
    : { secret: readClientSecret(config) };
}

/** The command that gets a fresh token: for hints (`status`) and fixes (`doctor`). */
export function renewCommand(config: Config, state: TokenState | undefined, now: Date): string {
  if (config.mode === "service-account") return "nix-cache-login service-account";
  const refreshUsable =
    state?.refresh_token !== undefined &&
    state.session_ended === undefined &&
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

/** Whether the stored access token stays valid `needed` more seconds. */
export function tokenLasts(state: TokenState | undefined, needed: number, now: Date): boolean {
  const left = remainingValidity(state, now);
  return left !== undefined && left >= needed && state?.access_token !== undefined;
}

/** The cache hosts whose netrc entry does not hold the stored access token (curl would not send it). */
export function hostsLackingToken(s: Session, state: TokenState | undefined): string[] {
  const { byHost } = netrcHolds(s.config.netrcPath, s.config.machines, state?.access_token);
  return [...byHost].filter(([, holds]) => !holds).map(([host]) => host);
}

/**
 * Whether every cache host's netrc entry holds the stored access token and it stays valid `needed`
 * more seconds: only then is a `--min-valid` run "fresh".
 */
export function tokenGood(s: Session, state: TokenState | undefined, needed: number, now: Date): boolean {
  return tokenLasts(state, needed, now) && hostsLackingToken(s, state).length === 0;
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
  if (opts.minValid !== undefined && /^\s*\d+\s*$/.test(opts.minValid)) {
    throw new CliError(`--min-valid: ${JSON.stringify(opts.minValid.trim())} has no unit`, {
      exitCode: ExitCode.usage,
      hint: `write ${opts.minValid.trim()}s, ${opts.minValid.trim()}m or ${opts.minValid.trim()}h`,
    });
  }
  const minValid = opts.minValid === undefined ? undefined : parseDuration(opts.minValid, "--min-valid");
  const session = await openSession(ctx);
  const mode = session.config.mode;
  // `service-account` with a user configuration fails here, naming the missing key.
  const credential =
    mode === "service-account" || grant === "client-credentials"
      ? readClientCredential(session.config)
      : undefined;
  let seen: TokenState | undefined;
  try {
    seen = session.store.read();
  } catch (e) {
    // A service account keeps nothing it cannot get again: the corrupt file is set aside under
    // the lock. A user's refresh token is not thrown away by a timer: `login` does that.
    if (!(e instanceof CorruptStateError && mode === "service-account")) throw e;
  }
  if (minValid !== undefined && tokenGood(session, seen, minValid, ctx.now())) {
    verbose(ctx)(`the access token stays valid for at least ${opts.minValid}; nothing to do`);
    recordTokens(ctx, session.config, seen, "none");
    return "fresh";
  }
  return { session, credential, seen, minValid };
}

/** For messages: "cache.example.org entry", "a and b entries", "a, b and c entries". */
export function describeEntries(machines: readonly string[]): string {
  if (machines.length <= 1) return `${machines[0] ?? ""} entry`;
  return `${machines.slice(0, -1).join(", ")} and ${machines[machines.length - 1] ?? ""} entries`;
}

/** Where the netrc's path came from, for messages about it. */
export function netrcWhere(config: Config): string {
  return `netrc_path in ${config.path}`;
}

/**
 * How long to wait for another live nix-cache-login holding a lock: its longest legitimate hold is
 * a few requests, each bounded by `timeout`. The note on stderr goes through the context.
 */
export function lockOptions(
  ctx: Context,
  config: Config,
): { notify: (line: string) => void; maxWaitMs: number } {
  return {
    notify: (line) => ctx.stderr.write(`note: ${line}\n`),
    maxWaitMs: (4 * config.timeoutSeconds + 30) * 1000,
  };
}
