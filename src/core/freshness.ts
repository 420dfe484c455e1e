/**
 * Whether the current token is still good, from the files alone; and what `refresh` and
 * `service-account` settle before any request. The renewal itself is in ./renew-under-lock.ts, which loads
 * the network code.
 */
import type { Config } from "../config/load.ts";
import { record, say, verbose, warn, type Context } from "../context.ts";
import { parseDuration } from "../duration.ts";
import { netrcHolds } from "../netrc/read.ts";
import { recordTokens } from "./result.ts";
import { CorruptStateError, hasRefreshToken, type TokenState } from "../store/state.ts";
import type { ClientCredential } from "../oidc/client-key.ts";
import { providerTime } from "./provider-clock.ts";
import { loadSetup, readClientCredential, type Setup } from "./setup.ts";

/**
 * The command that gets a fresh token: for hints (`status`) and fixes (`doctor`). `now` is the
 * provider's time.
 */
export function renewCommand(config: Config, state: TokenState | undefined, now: Date): string {
  if (config.mode === "service-account") return "nix-cache-login service-account";
  const refreshUsable =
    state !== undefined &&
    hasRefreshToken(state) &&
    state.session_ended === undefined &&
    (state.refresh_token_expires_at === null ||
      state.refresh_token_expires_at === undefined ||
      new Date(state.refresh_token_expires_at).getTime() > now.getTime());
  return refreshUsable ? "nix-cache-login refresh" : "nix-cache-login login";
}

/**
 * Seconds the current access token stays valid at `now` (negative when expired); undefined when
 * unknown. `now` is the provider's time (./provider-clock.ts): the stored expiries are.
 */
export function remainingValidity(state: TokenState | undefined, now: Date): number | undefined {
  if (state?.access_token_expires_at === undefined) return undefined;
  return (new Date(state.access_token_expires_at).getTime() - now.getTime()) / 1000;
}

/**
 * Whether the stored access token stays valid `needed` more seconds, on the provider's clock. When
 * the local clock moved since the last grant, no sum made with it is trusted: renew (one request).
 */
export function tokenLasts(state: TokenState | undefined, needed: number, localNow: Date): boolean {
  const clock = providerTime(state, localNow);
  if (clock.moved) return false;
  const left = remainingValidity(state, clock.now);
  return left !== undefined && left >= needed && state?.access_token !== undefined;
}

/** The cache hosts whose netrc entry does not hold the stored access token (curl would not send it). */
export function hostsLackingToken(s: Setup, state: TokenState | undefined): string[] {
  const { byHost } = netrcHolds(s.config.netrcPath, s.config.machines, state?.access_token);
  return [...byHost].filter(([, holds]) => !holds).map(([host]) => host);
}

/**
 * Whether every cache host's netrc entry holds the stored access token and it stays valid `needed`
 * more seconds: only then is a `--min-valid` run "fresh".
 */
export function tokenGood(s: Setup, state: TokenState | undefined, needed: number, now: Date): boolean {
  return tokenLasts(state, needed, now) && hostsLackingToken(s, state).length === 0;
}

/** A renewal to do: everything read and checked, nothing sent yet. */
export interface PendingRenewal {
  setup: Setup;
  /** The service account's secret or key, for the client credentials grant. */
  credential: ClientCredential | undefined;
  /** The state as read before the lock. */
  seen: TokenState | undefined;
  /** --min-valid in seconds. */
  minValid: number | undefined;
}

/**
 * What `refresh` and `service-account` do before any request: load and check everything, and
 * settle `--min-valid` from the files alone ("fresh": nothing to do). Timers run this every few
 * minutes, so it loads none of the network code.
 */
export function beginRenewal(
  ctx: Context,
  opts: { minValid?: string | undefined; dryRun?: boolean | undefined },
  command: "refresh" | "service-account",
): PendingRenewal | "fresh" {
  const minValid = opts.minValid === undefined ? undefined : parseDuration(opts.minValid, "--min-valid");
  const setup = loadSetup(ctx);
  // `service-account` with a user configuration fails here, naming the missing key.
  const credential =
    setup.config.mode === "service-account" || command === "service-account"
      ? readClientCredential(setup.config, (line) => warn(ctx, line))
      : undefined;
  if (opts.dryRun === true) {
    // What `timer status` runs the unit's command with: the unit would get this far, too.
    say(
      ctx,
      `Dry run: the configuration ${setup.config.path} (${setup.config.source}) is valid${credential === undefined ? "" : `, and its ${setup.config.clientKeyFile === undefined ? "client_secret_file" : "client_key_file"} is readable`}; nothing was sent or written.`,
    );
    record(ctx, { dry_run: true, config: setup.config.path });
    return "fresh";
  }
  let seen: TokenState | undefined;
  try {
    seen = setup.store.read();
  } catch (e) {
    // A service account keeps nothing it cannot get again: the corrupt file is set aside under
    // the lock. A user's refresh token is not thrown away by a timer: `login` does that.
    if (!(e instanceof CorruptStateError && setup.config.mode === "service-account")) throw e;
  }
  if (minValid !== undefined && providerTime(seen, ctx.now()).moved) {
    verbose(ctx)("the system clock moved since the last renewal: renewing rather than trusting it");
  } else if (minValid !== undefined && tokenGood(setup, seen, minValid, ctx.now())) {
    const until = (seen?.access_token_expires_at ?? "").replace(/\.\d{3}Z$/, "Z");
    say(
      ctx,
      `The access token stays valid until ${until}, more than --min-valid ${opts.minValid?.trim()}: nothing to do.`,
    );
    recordTokens(ctx, setup.config, seen, "none");
    return "fresh";
  }
  return { setup, credential, seen, minValid };
}
