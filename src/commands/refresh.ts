import { verbose, type Context } from "../context.ts";
import { beginRenewal } from "../core/freshness.ts";
import { ExitCode } from "../errors.ts";
import { recordTokens } from "../core/result.ts";

export interface RefreshOptions {
  minValid?: string | undefined;
  /** Only load and check what a run needs (`timer status` runs the unit's command so). */
  dryRun?: boolean | undefined;
  /**
   * No token state at all is not worth a message: the Nix modules' timers run for every user of
   * a machine, most of whom may never sign in, and each run would log the same error (macOS keeps
   * that log unrotated).
   */
  ifSignedIn?: boolean | undefined;
}

/**
 * Renews the access token without a browser: `refresh` with the stored refresh token, or for a
 * service account (either command) with the client credentials grant. A fresh enough token
 * (--min-valid) is settled from the files, before the network code is even loaded.
 */
export async function refresh(
  ctx: Context,
  opts: RefreshOptions,
  command: "refresh" | "service-account" = "refresh",
): Promise<number> {
  const pending = beginRenewal(ctx, opts, command);
  if (pending === "fresh") return ExitCode.ok;
  if (opts.ifSignedIn === true && pending.setup.config.mode === "user" && pending.seen === undefined) {
    verbose(ctx)(`no token state in ${pending.setup.store.file}: not signed in, nothing to renew`);
    // Nothing on stderr; --json still gets its object on stdout.
    recordTokens(ctx, pending.setup.config, undefined, "not_signed_in");
    return ExitCode.loginRequired;
  }
  if (command === "refresh" && pending.setup.config.mode === "service-account")
    verbose(ctx)("configuration is for a service account: using the client credentials grant");
  const { renew } = await import("../core/renew-under-lock.ts");
  return renew(ctx, pending);
}
