import type { Context } from "../context.ts";
import { refresh, type RefreshOptions } from "./refresh.ts";

/**
 * Client credentials with the secret from client_secret_file: for servers, run by a timer. A
 * configuration without client_secret_file is refused (exit 2) when the secret is read.
 */
export function serviceAccount(ctx: Context, opts: RefreshOptions): Promise<number> {
  return refresh(ctx, opts, "service-account");
}
