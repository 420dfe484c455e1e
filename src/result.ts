/**
 * The object `--json` prints for login, refresh, service-account and logout: what was done and
 * where the token is. Token values never appear in it.
 */
import type { Config } from "./config/load.ts";
import { record, type Context } from "./context.ts";
import type { TokenState } from "./store/state.ts";

export function recordTokens(
  ctx: Context,
  config: Config,
  state: TokenState | undefined,
  action: string,
): void {
  record(ctx, {
    action,
    config_path: config.path,
    issuer: config.issuer,
    client_id: config.clientId,
    host: config.machines[0],
    hosts: config.machines,
    netrc_path: config.netrcPath,
    username: state?.username ?? null,
    access_token_expires_at: state?.access_token_expires_at ?? null,
    refresh_token_expires_at: config.mode === "user" ? (state?.refresh_token_expires_at ?? null) : null,
  });
}
