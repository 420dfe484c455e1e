/**
 * What every command starts from, without the network: the configuration and the token store it
 * names, and the client secret. Only files are read here, synchronously: `status`, `--help` and a
 * timer's `refresh --min-valid` need nothing else, so they start fast.
 */
import { readFileSync } from "node:fs";
import { loadConfig, type Config } from "../config/load.ts";
import { stateDir } from "../config/paths.ts";
import { verbose, type Context } from "../context.ts";
import { CliError, ExitCode } from "../errors.ts";
import { StateStore } from "../store/state.ts";

/** The loaded configuration and the token store of its (issuer, client_id). */
export interface Setup {
  config: Config;
  store: StateStore;
}

export function loadSetup(ctx: Context): Setup {
  const config = loadConfig(ctx.configFlag, ctx.env);
  verbose(ctx)(`using configuration ${config.path} (${config.source})`);
  return { config, store: new StateStore(stateDir(ctx.env), config.issuer, config.clientId) };
}

export function readClientSecret(config: Config): string {
  if (config.clientSecretFile === undefined) {
    throw new CliError(
      `${config.path}: client_secret_file is not set, so this configuration is for user sign-in`,
      {
        exitCode: ExitCode.usage,
        code: "not_service_account",
        hint: "set client_secret_file for a service account, or use `nix-cache-login login`",
      },
    );
  }
  const file = config.resolveClientSecretFile();
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new CliError(
      `client_secret_file ${file}: ${code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : (code ?? (e as Error).message)}`,
      {
        exitCode: code === "ENOENT" ? ExitCode.usage : ExitCode.failure,
        code: code === "ENOENT" ? "client_secret_missing" : "client_secret_unreadable",
        hint:
          code === "EACCES"
            ? "run as a user that can read it (the file should stay private)"
            : `fix client_secret_file in ${config.path}`,
      },
    );
  }
  const secret = text.replace(/\s+$/, "");
  if (secret === "") {
    throw new CliError(`client_secret_file ${file}: the file is empty`, {
      exitCode: ExitCode.usage,
      code: "client_secret_empty",
    });
  }
  return secret;
}
