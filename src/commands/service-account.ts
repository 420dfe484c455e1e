import type { Context } from "../context.ts";
import { loadConfig } from "../config/load.ts";
import { CliError, ExitCode } from "../errors.ts";
import { refresh, type RefreshOptions } from "./refresh.ts";

/** Client credentials with the secret from client_secret_file: for servers, run by a timer. */
export async function serviceAccount(ctx: Context, opts: RefreshOptions): Promise<number> {
  const config = await loadConfig(ctx.configFlag, ctx.env);
  if (config.mode !== "service-account") {
    throw new CliError(
      `${config.path}: client_secret_file is not set, so this configuration is for user sign-in`,
      {
        exitCode: ExitCode.usage,
        hint: "set client_secret_file for a service account, or use `nix-cache-login login`",
      },
    );
  }
  return refresh(ctx, opts, "client-credentials");
}
