import { say, verbose, type Context } from "../context.ts";
import { beginRenewal } from "../core/renewal.ts";
import { describeExpiry } from "../duration.ts";
import { ExitCode } from "../errors.ts";
import { recordTokens } from "../result.ts";

export interface RefreshOptions {
  minValid?: string | undefined;
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
  const mode = pending.setup.config.mode;
  if (command === "refresh" && mode === "service-account")
    verbose(ctx)("configuration is for a service account: using the client credentials grant");
  const { renew } = await import("../core/renew.ts");
  const next = await renew(ctx, pending);
  if (next === "renewed-meanwhile") return ExitCode.ok;
  recordTokens(ctx, pending.setup.config, next, "renewed");
  const expires = next.access_token_expires_at === undefined ? null : new Date(next.access_token_expires_at);
  say(
    ctx,
    `${mode === "service-account" ? "Got a new token" : "Renewed the token"} for ${pending.setup.config.machine}: ${describeExpiry(expires, ctx.now())}`,
  );
  return ExitCode.ok;
}
