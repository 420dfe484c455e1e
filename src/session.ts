/**
 * What the commands share: load the configuration, open the token state, and turn a fresh token
 * set into files (state first, then netrc: a crash between the two leaves a working refresh token).
 */
import { readFile } from "node:fs/promises";
import { loadConfig, type Config } from "./config/load.ts";
import { stateDir } from "./config/paths.ts";
import { verbose, warn, type Context } from "./context.ts";
import { CliError, ExitCode } from "./errors.ts";
import { checkTokenLength, upsertNetrcEntry } from "./netrc/file.ts";
import { Provider, type TokenSet } from "./oidc/provider.ts";
import { sha256, StateStore, type TokenState } from "./store/state.ts";

export interface Session {
  config: Config;
  store: StateStore;
}

export async function openSession(ctx: Context): Promise<Session> {
  const config = await loadConfig(ctx.configFlag, ctx.env);
  verbose(ctx)(`using configuration ${config.path} (${config.source})`);
  return { config, store: new StateStore(stateDir(ctx.env), config.issuer, config.clientId) };
}

export function provider(
  ctx: Context,
  s: Session,
  state: TokenState | undefined,
  clientSecret?: string,
): Provider {
  return new Provider({
    config: s.config,
    env: ctx.env,
    log: verbose(ctx),
    now: ctx.now,
    clientSecret,
    discovery: state?.discovery,
  });
}

export async function readClientSecret(config: Config): Promise<string> {
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
    text = await readFile(file, "utf8");
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

/** Seconds the current access token stays valid, if the netrc still holds it; else undefined. */
export function remainingValidity(state: TokenState | undefined, now: Date): number | undefined {
  if (state?.access_token_expires_at === undefined) return undefined;
  return (new Date(state.access_token_expires_at).getTime() - now.getTime()) / 1000;
}

/** Saves a new token set: state first (a rotated refresh token must never be lost), then the netrc. */
export async function saveTokens(
  ctx: Context,
  s: Session,
  previous: TokenState | undefined,
  tokens: TokenSet,
  p: Provider,
  mode: TokenState["mode"],
): Promise<TokenState> {
  // Refuse an oversized token before anything is written.
  checkTokenLength(tokens.accessToken, s.config.machine);
  const base = previous ?? s.store.empty(mode);
  const next: TokenState = {
    ...base,
    mode,
    refresh_token: mode === "user" ? (tokens.refreshToken ?? base.refresh_token) : undefined,
    access_token_expires_at: tokens.accessExpiresAt?.toISOString(),
    refresh_token_expires_at:
      mode === "user"
        ? tokens.refreshToken !== undefined
          ? (tokens.refreshExpiresAt?.toISOString() ?? null)
          : base.refresh_token_expires_at
        : undefined,
    access_token_sha256: sha256(tokens.accessToken),
    username: tokens.username ?? base.username,
    discovery: p.discovery,
  };
  await s.store.write(next);
  const tightened = await upsertNetrcEntry(s.config.netrcPath, s.config.machine, tokens.accessToken);
  if (tightened !== undefined) warn(ctx, tightened);
  verbose(ctx)(`wrote the ${s.config.machine} entry in ${s.config.netrcPath}`);
  return next;
}
