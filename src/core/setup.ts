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
import { KeychainVault } from "./refresh-token-storage.ts";
import type { ClientCredential } from "../oidc/client-key.ts";
import type { ProviderSettings } from "../oidc/settings.ts";

/** The loaded configuration and the token store of its (issuer, client_id). */
export interface Setup {
  config: Config;
  store: StateStore;
  /** Where the refresh token lives besides the state file (token_storage); the store uses it too. */
  vault: KeychainVault;
}

export function loadSetup(ctx: Context): Setup {
  const config = loadConfig(ctx.configFlag, ctx.env);
  verbose(ctx)(`using configuration ${config.path} (${config.source})`);
  const vault = new KeychainVault(ctx, config);
  return { config, store: new StateStore(stateDir(ctx.env), config.issuer, config.clientId, vault), vault };
}

/** What a Provider needs of the configuration (../oidc/settings.ts). */
export function providerSettings(config: Config): ProviderSettings {
  return {
    issuer: config.issuer,
    clientId: config.clientId,
    scopes: config.scopes,
    timeoutSeconds: config.timeoutSeconds,
    defaultTokenLifetime: config.defaultTokenLifetime,
    tokenEndpointAuthMethod: config.tokenEndpointAuthMethod,
    configPath: config.path,
    clientSecretFile: config.clientSecretFile,
    clientKeyFile: config.clientKeyFile,
  };
}

function readPrivateFile(
  config: Config,
  key: "client_secret_file" | "client_key_file",
  file: string,
): string {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") {
      throw new CliError("credential_file_missing", `${key} ${file}: no such file`, {
        exitCode: ExitCode.usage,
        hint: `fix ${key} in ${config.path}`,
      });
    }
    throw new CliError(
      "credential_file_unreadable",
      `${key} ${file}: ${code === "EACCES" ? "permission denied" : (code ?? (e as Error).message)}`,
      {
        hint:
          code === "EACCES"
            ? "run as a user that can read it (the file should stay private)"
            : `fix ${key} in ${config.path}`,
      },
    );
  }
  const trimmed = text.replace(/\s+$/, "");
  if (trimmed === "") {
    throw new CliError("credential_file_empty", `${key} ${file}: the file is empty`, {
      exitCode: ExitCode.usage,
    });
  }
  return trimmed;
}

function notServiceAccount(config: Config): CliError {
  return new CliError(
    "not_service_account",
    `${config.path}: neither client_secret_file nor client_key_file is set, so this configuration is for user sign-in`,
    {
      exitCode: ExitCode.usage,
      hint: "set client_secret_file (or client_key_file) for a service account, or use `nix-cache-login login`",
    },
  );
}

export function readClientSecret(config: Config): string {
  if (config.clientSecretFile === undefined) throw notServiceAccount(config);
  return readPrivateFile(config, "client_secret_file", config.resolveClientSecretFile());
}

/**
 * The text of a private_key_jwt client's key file; ../oidc/client-key.ts parses it (node:crypto is
 * too heavy for the files-only start-up path).
 */
export function readClientKeyText(config: Config): { keyText: string; keyFile: string } {
  if (config.clientKeyFile === undefined) throw notServiceAccount(config);
  const keyFile = config.resolveClientKeyFile();
  return { keyText: readPrivateFile(config, "client_key_file", keyFile), keyFile };
}

/** The service account's credential: the key for private_key_jwt, else the secret. */
export function readClientCredential(config: Config): ClientCredential {
  return config.clientKeyFile !== undefined
    ? readClientKeyText(config)
    : { secret: readClientSecret(config) };
}

/** For messages: "cache.example.org entry", "a and b entries", "a, b and c entries". */
export function describeEntries(machines: readonly string[]): string {
  if (machines.length <= 1) return `${machines[0] ?? ""} entry`;
  return `${machines.slice(0, -1).join(", ")} and ${machines[machines.length - 1] ?? ""} entries`;
}

/** Where the netrc's path came from, for messages about it. */
export function netrcWhere(config: Config): string {
  return `netrc_path in ${config.path}`;
}

/**
 * How long to wait for another live nix-cache-login holding a lock: its longest legitimate hold is
 * a few requests, each bounded by `timeout`. The note on stderr goes through the context.
 */
export function lockOptions(
  ctx: Context,
  config: Config,
): { notify: (line: string) => void; maxWaitMs: number } {
  return {
    notify: (line) => ctx.stderr.write(`note: ${line}\n`),
    maxWaitMs: (4 * config.timeoutSeconds + 30) * 1000,
  };
}
