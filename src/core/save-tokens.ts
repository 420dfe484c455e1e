/**
 * Turning a fresh token set into files: state first, then netrc (a crash between the two leaves a
 * working refresh token, never a lost one).
 */
import { say, verbose, warn, type Context } from "../context.ts";
import { checkNetrcWritable, checkTokenLength, upsertNetrcEntries } from "../netrc/file.ts";
import { Provider } from "../oidc/provider.ts";
import type { TokenSet } from "../oidc/token-set.ts";
import type { ClientCredential } from "../oidc/client-key.ts";
import { describeEntries, netrcWhere, providerSettings, type Setup } from "./setup.ts";
import type { TokenState } from "../store/state.ts";
import { STATE_WHERE, writeState, type StateReservation } from "../store/write.ts";
import { realpath, stat } from "node:fs/promises";
import { checkRoom } from "../fs/atomic-file.ts";
import { clockRecord, providerTime } from "./provider-clock.ts";

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
    clockSkewMs: providerTime(state, ctx.now()).skewMs,
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
  // One token for every host: checked once, named after all of them. A refusal leaves the netrc
  // and the stored access token as they were; a rotated refresh token was saved before any check
  // (Provider.refresh), so the next run can try again.
  const sizeWarning = checkTokenLength(tokens.accessToken, s.config.machines.join(", "));
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
    refresh_token_offline:
      mode === "user"
        ? tokens.refreshToken !== undefined
          ? tokens.refreshOffline || undefined
          : base.refresh_token_offline
        : undefined,
    access_token: tokens.accessToken,
    username: tokens.username ?? base.username,
    subject: tokens.subject ?? base.subject,
    discovery: p.discovery,
    clock: clockOf(tokens, base),
    // New tokens: whatever session ended before (see refresh), this one is alive.
    session_ended: undefined,
  };
  await writeState(s.store, next, { reserved });
  await writeNetrcEntries(ctx, s, s.config.machines, tokens.accessToken);
  return next;
}

/** The clock measurement an answer gave, else the one stored before. */
export function clockOf(
  t: { clockOffsetMs: number | undefined; receivedAt: Date },
  before: TokenState | undefined,
): TokenState["clock"] {
  if (t.clockOffsetMs !== undefined) return clockRecord(t.clockOffsetMs, t.receivedAt);
  // No Date header, no `iat`: the best estimate so far, taken again now (the clock may have moved).
  return before?.clock === undefined
    ? undefined
    : clockRecord(providerTime(before, t.receivedAt).skewMs, t.receivedAt);
}

/**
 * Before a sign-in: the token state and the netrc can be written (room for both, as large as the
 * reservation a renewal takes), so a full disk fails now, not after the browser sign-in.
 */
export async function checkRoomToSave(s: Setup): Promise<void> {
  const size = (path: string) =>
    stat(path).then(
      (st) => st.size,
      () => 0,
    );
  // A netrc the token cannot go into (untrusted, broken) fails before the sign-in, not after it.
  checkNetrcWritable(s.config.netrcPath);
  const netrc = await realpath(s.config.netrcPath).catch(() => s.config.netrcPath);
  await checkRoom(
    s.store.file,
    Math.max(32 * 1024, 2 * (await size(s.store.file)) + 16 * 1024),
    "make room for the token state before signing in",
    STATE_WHERE,
  );
  await checkRoom(
    netrc,
    (await size(netrc)) + (8 * s.config.machines.length + 16) * 1024,
    "make room for the netrc before signing in",
    netrcWhere(s.config),
  );
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
