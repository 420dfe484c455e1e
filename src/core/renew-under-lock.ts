/**
 * The renewal after ./freshness.ts found one is needed: under the state lock, a refresh token grant
 * (user sign-in) or a client credentials grant (service account), then the files, then the line
 * that says so. Loaded only when a renewal is due: it brings the network code.
 */
import { say, verbose, warn, type Context } from "../context.ts";
import { describeExpiry } from "../duration.ts";
import { CliError, ExitCode, loginRequired } from "../errors.ts";
import { parseClientKey } from "../oidc/client-key.ts";
import { SessionEndedError } from "../oidc/protocol-errors.ts";
import type { RotatedRefreshToken, TokenSet } from "../oidc/token-set.ts";
import { recordTokens } from "./result.ts";
import {
  readStateOrSetAside,
  reserveStateWrite,
  withStateLock,
  writeState,
  type StateReservation,
} from "../store/write.ts";
import { hasRefreshToken, type TokenState } from "../store/state.ts";
import { noRefreshTokenFix, noRefreshTokenIssued, noRefreshTokenReason } from "./refresh-token.ts";
import { hostsLackingToken, remainingValidity, tokenLasts, type PendingRenewal } from "./freshness.ts";
import { providerTime, storedOffsetMs } from "./provider-clock.ts";
import { clockOf, provider, saveTokens, writeNetrcEntries } from "./save-tokens.ts";
import { describeEntries, lockOptions, type Setup } from "./setup.ts";
import { checkNetrcWritable } from "../netrc/file.ts";
import { quoted } from "../text.ts";

/**
 * The whole read -> grant -> write runs under the state lock and re-reads the state after taking
 * it: Keycloak may end a session when a rotated refresh token is used twice, so two timers must
 * never both spend the same one.
 */
export function renew(ctx: Context, r: PendingRenewal): Promise<number> {
  const { setup: s, seen, minValid } = r;
  // A bad key file is a configuration error, found before any request; the provider signs with
  // the key parsed here.
  const credential =
    r.credential !== undefined && "keyText" in r.credential
      ? { ...r.credential, key: parseClientKey(s.config, r.credential.keyText, r.credential.keyFile) }
      : r.credential;
  const log = verbose(ctx);
  const mode = s.config.mode;

  return withStateLock(
    s.store,
    async () => {
      const state =
        mode === "service-account"
          ? await readStateOrSetAside(s.store, (line) => warn(ctx, line))
          : s.store.read();
      // Another process renewed after this one started (a timer and a user, or ten processes started
      // at once, some of which start slower): its token is as fresh as ours would be. The process's
      // own start is the reference, not our first read: a slow starter may read after the renewal.
      // Both times on the provider's clock: a renewal made under a clock that was off says so in
      // its stored offset, and must not look like one made after this process started.
      const clock = providerTime(state, ctx.now());
      const renewedAt =
        state?.updated_at === undefined ? NaN : Date.parse(state.updated_at) + (storedOffsetMs(state) ?? 0);
      // A state that says the session ended was written by a run that got no token: no renewal.
      const renewedMeanwhile =
        state?.access_token !== undefined &&
        state.session_ended === undefined &&
        (state.access_token !== seen?.access_token || renewedAt >= performance.timeOrigin + clock.skewMs);
      const needed = minValid ?? (renewedMeanwhile ? 1 : Infinity);
      // As tokenGood, keeping the hosts that lack the token for the copy below (one netrc read).
      const lacking = tokenLasts(state, needed, ctx.now()) ? hostsLackingToken(s, state) : undefined;
      if (lacking?.length === 0) {
        log("another nix-cache-login renewed the token meanwhile; nothing to do");
        recordTokens(ctx, s.config, state, "none");
        return ExitCode.ok;
      }
      if (state !== undefined && lacking !== undefined) {
        await copyTokenToHosts(ctx, s, state, lacking);
        recordTokens(ctx, s.config, state, "copied");
        return ExitCode.ok;
      }
      // A user sign-in that cannot be renewed is said before the reservation below: none of this
      // writes anything, so neither a full disk nor its 32 KiB sync may stand in its way.
      let userState: TokenState | undefined;
      if (mode !== "service-account") {
        if (state !== undefined && noRefreshTokenIssued(s.config, state)) {
          return withoutRefreshToken(ctx, s, state);
        }
        if (state === undefined || !hasRefreshToken(state)) {
          throw loginRequired(
            "not_signed_in",
            `not signed in to ${s.config.issuer} as client ${s.config.clientId}`,
          );
        }
        if (state.session_ended !== undefined) {
          // The provider ended it earlier (a refresh answered invalid_grant): the same error again.
          throw new SessionEndedError(
            `the session at ${s.config.issuer} ended at ${state.session_ended.at}${state.session_ended.description === null ? "" : ` (${state.session_ended.description})`}`,
            state.session_ended.description ?? undefined,
          );
        }
        userState = state;
      }
      // A netrc the token cannot go into (untrusted, broken) fails now: no grant, no file changed.
      checkNetrcWritable(s.config.netrcPath);
      const p = provider(ctx, s, state, credential);
      // Room for the rotated token before it exists: a full disk fails here, session intact.
      const reserved = await reserveStateWrite(s.store);
      try {
        return await grant(reserved);
      } finally {
        await reserved.release();
      }

      async function grant(reserved: StateReservation): Promise<number> {
        let tokens;
        if (mode === "service-account") {
          tokens = await p.clientCredentials();
        } else {
          const signedIn = userState as TokenState;
          // Before the grant: a locked keychain fails here, with the session and the netrc intact.
          s.vault.preflight();
          const loaded = await s.vault.load(signedIn);
          const refreshToken = loaded.refresh_token as string;
          // The rotated refresh token is saved the moment the answer is read (see Provider.refresh);
          // writeState puts it where token_storage says (the keychain, or the file).
          let rotated = false;
          const saveRotated = async (t: RotatedRefreshToken): Promise<void> => {
            await writeState(
              s.store,
              {
                ...signedIn,
                refresh_token: t.refreshToken,
                refresh_token_expires_at: t.refreshExpiresAt?.toISOString() ?? null,
                discovery: p.discovery,
                clock: clockOf(t, signedIn),
              },
              { touch: false, reserved },
            );
            rotated = true;
            log("saved the new refresh token before checking the answer");
          };
          try {
            tokens = await p.refresh(refreshToken, saveRotated);
          } catch (e) {
            if (rotated) {
              // The cause (with its own code) is in --verbose.
              throw new CliError(
                "refresh_refused_token_saved",
                `${e instanceof Error ? e.message : String(e)}; the new refresh token is saved`,
                {
                  hint: "check the system clock, then run `nix-cache-login refresh` again (no new sign-in is needed)",
                  cause: e,
                },
              );
            }
            // Remember that the provider ended the session, so `status` and `doctor` stop calling the
            // refresh token valid. updated_at stays: it marks renewals.
            if (e instanceof SessionEndedError) {
              await writeState(
                s.store,
                {
                  ...signedIn,
                  session_ended: { at: clock.now.toISOString(), description: e.description ?? null },
                },
                { touch: false, reserved },
              ).catch((e2: unknown) => log(`could not record the end of the session: ${String(e2)}`));
            }
            throw e;
          }
          tokens = sameAccount(tokens, signedIn, p.host, rotated);
        }
        const next = await saveTokens(ctx, s, state, tokens, p, mode, reserved);
        recordTokens(ctx, s.config, next, "renewed");
        const expires =
          next.access_token_expires_at === undefined ? null : new Date(next.access_token_expires_at);
        say(
          ctx,
          `${mode === "service-account" ? "Got a new token" : "Renewed the token"} for ${s.config.machines.join(", ")}: ${describeExpiry(expires, providerTime(next, ctx.now()).now)}`,
        );
        return ExitCode.ok;
      }
    },
    lockOptions(ctx, s.config),
  );
}

/**
 * The stored token is still good but some host's entry lacks it: another configuration with the
 * same issuer and client_id (they share one token state) renewed it, or an entry was removed by
 * hand. Writing it there costs no grant, and the other configuration's entries stay valid.
 */
async function copyTokenToHosts(ctx: Context, s: Setup, state: TokenState, lacking: string[]): Promise<void> {
  await writeNetrcEntries(ctx, s, lacking, state.access_token as string);
  const expires =
    state.access_token_expires_at === undefined ? null : new Date(state.access_token_expires_at);
  say(
    ctx,
    `Wrote the current token to the ${describeEntries(lacking)} (no new grant needed): ${describeExpiry(expires, providerTime(state, ctx.now()).now)}`,
  );
}

/**
 * A session the provider gave no refresh token (see ./refresh-token.ts): nothing to renew with, but
 * nothing wrong either while the access token lasts. A timer's `refresh --min-valid` then succeeds
 * (and says until when); once the token has expired, or when its expiry is unknown because the
 * clock moved, only a sign-in helps (exit 3).
 */
async function withoutRefreshToken(ctx: Context, s: Setup, state: TokenState): Promise<number> {
  // On the provider's clock, as the stored expiry is (./provider-clock.ts).
  const clock = providerTime(state, ctx.now());
  const now = clock.now;
  const left = remainingValidity(state, now);
  // As `status`: when only the access token's `iat` tells the provider's time (the clock moved,
  // and no measurement says by how much), its expiry is unknown, and an unknown expiry is not a
  // valid token. With no refresh token no grant measures the clock again: only a sign-in helps.
  const unknown = clock.basis === "issued";
  if (unknown || left === undefined || left <= 0) {
    throw new CliError(
      "no_refresh_token",
      `${unknown ? "cannot tell whether the access token is still valid (the system clock moved since it was issued)" : "the access token expired"}, and ${noRefreshTokenReason(s.config)}`,
      {
        exitCode: ExitCode.loginRequired,
        hint: `run \`nix-cache-login login\`; ${noRefreshTokenFix(s.config)}`,
      },
    );
  }
  const lacking = hostsLackingToken(s, state);
  if (lacking.length > 0) await copyTokenToHosts(ctx, s, state, lacking);
  const expires = new Date(state.access_token_expires_at as string);
  // Not warn(): a timer's `--quiet` run that succeeds prints nothing (cron mails nothing); the
  // exit 3 once the token has expired is what must be seen.
  say(
    ctx,
    `warning: the token cannot be renewed: ${noRefreshTokenReason(s.config)}; the current one is ${describeExpiry(expires, now)}`,
  );
  recordTokens(ctx, s.config, state, lacking.length > 0 ? "copied" : "none");
  return ExitCode.ok;
}

/**
 * A refresh answer's ID token must be about the account that signed in (OIDC Core 12.2: its
 * `sub` is the original's); one for another `sub` is refused, and nothing of the answer reaches
 * the netrc. Whatever it says, the account stays the sign-in's: the refreshed ID token's
 * signature is not checked (that would cost a key-set request per renewal: the keys are not kept
 * between runs), so neither its `sub` nor its name replaces the stored ones. A rotated refresh
 * token was saved before this check (Provider.refresh) and is kept: the old one is spent, the new
 * one came from the token endpoint in answer to ours, and every renewal with it meets this check
 * again before any access token is written.
 */
function sameAccount(tokens: TokenSet, signedIn: TokenState, host: string, rotated: boolean): TokenSet {
  if (tokens.subject !== undefined && signedIn.subject !== undefined && tokens.subject !== signedIn.subject) {
    throw new CliError(
      "refresh_subject_changed",
      `${host} answered the refresh with an ID token for another account (sub ${quoted(tokens.subject, 100)}, signed in as sub ${quoted(signedIn.subject, 100)}); ${rotated ? "only the new refresh token was saved" : "nothing was written"}, the netrc is unchanged`,
      {
        hint: "the provider may be misconfigured or compromised: tell its administrators; `nix-cache-login login` signs in again",
      },
    );
  }
  return { ...tokens, username: undefined, subject: undefined };
}
