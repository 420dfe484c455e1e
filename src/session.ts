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

export function readClientSecret(config: Config): string {
  if (config.clientSecretFile === undefined) {
    throw new CliError(
      `${config.path}: client_secret_file is not set, so this configuration is for user sign-in`,
      {
        exitCode: ExitCode.usage,
        hint: "set client_secret_file for a service account, or use `nix-cache-login login`",
      },
    );
  }
  const file = config.resolveClientSecretFile();
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new CliError(
      `client_secret_file ${file}: ${code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : (code ?? (e as Error).message)}`,
      {
        exitCode: code === "ENOENT" ? ExitCode.usage : ExitCode.failure,
        hint:
          code === "EACCES"
            ? "run as a user that can read it (the file should stay private)"
            : `fix client_secret_file in ${config.path}`,
      },
    );
  }
  const secret = text.replace(/\s+$/, "");
  if (secret === "") {
    throw new CliError(`client_secret_file ${file}: the file is empty`, { exitCode: ExitCode.usage });
  }
  return secret;
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
  secret: string | undefined;
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
  const secret =
    mode === "service-account" || grant === "client-credentials"
      ? readClientSecret(session.config)
      : undefined;
  const seen = session.store.read();
  if (minValid !== undefined && tokenGood(session, seen, minValid, ctx.now())) {
    verbose(ctx)(`the access token stays valid for at least ${opts.minValid}; nothing to do`);
    return "fresh";
  }
  return { session, secret, seen, minValid };
}

/** For messages: "cache.example.org entry", "a and b entries", "a, b and c entries". */
export function describeEntries(machines: readonly string[]): string {
  if (machines.length <= 1) return `${machines[0] ?? ""} entry`;
  return `${machines.slice(0, -1).join(", ")} and ${machines[machines.length - 1] ?? ""} entries`;
}
