/**
 * Turning a fresh token set into files: state first, then netrc (a crash between the two leaves a
 * working refresh token, never a lost one).
 */
import { say, verbose, warn, type Context } from "../context.ts";
import { checkTokenLength, upsertNetrcEntries } from "../netrc/file.ts";
import { Provider } from "../oidc/provider.ts";
import type { TokenSet } from "../oidc/token-set.ts";
import type { ClientCredential } from "../oidc/client-key.ts";
import { describeEntries, netrcWhere, providerSettings, type Setup } from "./setup.ts";
import type { TokenState } from "../store/state.ts";
import { writeState, type StateReservation } from "../store/write.ts";

export function provider(
  ctx: Context,
  s: Setup,
  state: TokenState | undefined,
  credential?: ClientCredential,
): Provider {
  return new Provider({
    settings: providerSettings(s.config),
    env: ctx.env,
    log: verbose(ctx),
    now: ctx.now,
    credential,
    discovery: state?.discovery,
    onSlowRequest: ctx.onSlowRequest,
  });
}

/** Saves a new token set: state first (a rotated refresh token must never be lost), then the netrc. */
export async function saveTokens(
  ctx: Context,
  s: Setup,
  previous: TokenState | undefined,
  tokens: TokenSet,
  p: Provider,
  mode: TokenState["mode"],
  reserved?: StateReservation,
): Promise<TokenState> {
  const base = previous ?? s.store.empty(mode);
  let sizeWarning: string | undefined;
  try {
    // One token for every host: checked once, named after all of them.
    sizeWarning = checkTokenLength(tokens.accessToken, s.config.machines.join(", "));
  } catch (e) {
    // Refuse the access token, but keep a rotated refresh token: the old one is spent, and losing
    // the new one would end the session. The netrc and the stored access token stay as they were.
    if (previous !== undefined && mode === "user" && tokens.refreshToken !== undefined) {
      await writeState(
        s.store,
        {
          ...previous,
          refresh_token: tokens.refreshToken,
          refresh_token_expires_at: tokens.refreshExpiresAt?.toISOString() ?? null,
          discovery: p.discovery,
        },
        { reserved },
      );
      verbose(ctx)("saved the rotated refresh token; the access token was refused");
    }
    throw e;
  }
  if (sizeWarning !== undefined) warn(ctx, sizeWarning);
  const next: TokenState = {
    ...base,
    mode,
    refresh_token: mode === "user" ? (tokens.refreshToken ?? base.refresh_token) : undefined,
    access_token_expires_at: tokens.accessExpiresAt?.toISOString(),
    access_token_expiry_assumed: tokens.accessExpiryAssumed ? true : undefined,
    refresh_token_expires_at:
      mode === "user"
        ? tokens.refreshToken !== undefined
          ? (tokens.refreshExpiresAt?.toISOString() ?? null)
          : base.refresh_token_expires_at
        : undefined,
    access_token: tokens.accessToken,
    username: tokens.username ?? base.username,
    subject: tokens.subject ?? base.subject,
    discovery: p.discovery,
    // New tokens: whatever session ended before (see refresh), this one is alive.
    session_ended: undefined,
  };
  await writeState(s.store, next, { reserved });
  await writeNetrcEntries(ctx, s, s.config.machines, tokens.accessToken);
  return next;
}

/** One atomic netrc write for all `machines`, under the netrc's lock. */
export async function writeNetrcEntries(
  ctx: Context,
  s: Setup,
  machines: readonly string[],
  token: string,
): Promise<void> {
  const tightened = await upsertNetrcEntries(
    s.config.netrcPath,
    machines,
    token,
    netrcWhere(s.config),
    (dir) =>
      say(ctx, `Created the directory ${dir} for the netrc ${s.config.netrcPath} (${netrcWhere(s.config)}).`),
  );
  if (tightened !== undefined) warn(ctx, tightened);
  verbose(ctx)(`wrote the ${describeEntries(machines)} in ${s.config.netrcPath}`);
}
