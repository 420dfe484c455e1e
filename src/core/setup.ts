/**
 * What every command starts from, without the network: the configuration and the token store it
 * names, and the client secret. Only files are read here, synchronously: `status`, `--help` and a
 * timer's `refresh --min-valid` need nothing else, so they start fast.
 */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { readOpened } from "../fs/read-opened.ts";
import { configCandidates } from "../config/find.ts";
import { checkHomeIsOurs } from "../config/home.ts";
import { loadConfig, type Config } from "../config/load.ts";
import { stateDir } from "../config/paths.ts";
import { verbose, type Context } from "../context.ts";
import { oneLine } from "../text.ts";
import { CliError, ExitCode } from "../errors.ts";
import { foreignOwner, formatMode, UntrustedPath, walkTrusted, writableByOthers } from "../fs/file-trust.ts";
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
  // Before anything is read: in another user's home, their files would be refused one by one. A
  // default place that does not exist there is not a reason (the token state's place may be).
  checkHomeIsOurs(
    ctx.env,
    configCandidates(ctx.configFlag, ctx.env)
      .filter((c) => c.explicit || existsSync(c.path))
      .map((c) => c.path),
  );
  const config = loadConfig(ctx.configFlag, ctx.env);
  verbose(ctx)(`using configuration ${config.path} (${config.source})`);
  const dir = stateDir(ctx.env);
  checkHomeIsOurs(ctx.env, [dir, config.netrcPath]);
  const vault = new KeychainVault(ctx, config);
  return { config, store: new StateStore(dir, config.issuer, config.clientId, vault), vault };
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

/** Gets a warning about a credential file (others can read it); the caller says where it goes. */
export type CredentialWarning = (line: string) => void;

function untrustedCredential(key: string, file: string, why: string, fix: string): CliError {
  return new CliError(
    "credential_file_untrusted",
    `${key} ${file}: ${why}, so another user could have changed it; it is not used`,
    { hint: fix },
  );
}

/**
 * A credential file is used only when no other user could have written it: the file and the
 * directories on its path (through any symbolic link) are ours or root's and writable by no one
 * else (../fs/file-trust.ts). One others can read is used with a warning. Files systemd hands the
 * unit in $CREDENTIALS_DIRECTORY (LoadCredential=) are its to protect and pass as they are.
 * Returns the path to read.
 */
function trustedCredentialPath(
  key: string,
  file: string,
  credentialsDirectory: string | undefined,
  onWarning: CredentialWarning | undefined,
): string {
  if (credentialsDirectory !== undefined && credentialsDirectory !== "") {
    const dir = resolve(credentialsDirectory);
    if (resolve(file).startsWith(`${dir}/`)) return file;
  }
  let walked;
  try {
    walked = walkTrusted(file);
  } catch (e) {
    if (!(e instanceof UntrustedPath)) throw e;
    throw untrustedCredential(key, file, `its path goes through ${e.at}, ${e.why}`, e.fix);
  }
  const st = walked.st;
  // Missing, or a directory: reading it says so.
  if (st === undefined || st.isDirectory()) return file;
  const owner = foreignOwner(st);
  if (owner !== undefined) {
    throw untrustedCredential(
      key,
      file,
      `the file is ${owner}`,
      `check who made it; give the file to the user that runs nix-cache-login (or root), mode 0600`,
    );
  }
  const writable = writableByOthers(st);
  if (writable !== undefined) {
    throw untrustedCredential(
      key,
      file,
      `the file is ${writable}`,
      `check its contents, then \`chmod 600 ${walked.real}\``,
    );
  }
  if ((st.mode & 0o004) !== 0) {
    onWarning?.(
      `${key} ${file} is readable by every local user (mode ${formatMode(st.mode)}): \`chmod o-r ${walked.real}\` (0600, or 0640 for a service's group)`,
    );
  }
  return walked.real;
}

/** A client secret is a line, a private key (PEM or JWK) a few kilobytes. */
const MAX_CREDENTIAL_BYTES = 64 * 1024;

/**
 * Refused unless it is a regular file (../fs/read-opened.ts: a FIFO is refused, not waited on); a
 * directory fails as a read of one does (EISDIR).
 */
function readRegularFile(key: string, file: string, path: string): string {
  const only = `point ${key} at a file holding only the ${key === "client_key_file" ? "key" : "secret"}`;
  return readOpened(path, {
    noFollow: false,
    check(st) {
      if (!st.isFile() && !st.isDirectory()) {
        throw new CliError("credential_file_not_regular_file", `${key} ${file}: not a regular file`, {
          exitCode: ExitCode.usage,
          hint: only,
        });
      }
    },
    maxBytes: MAX_CREDENTIAL_BYTES,
    tooLarge: (size) =>
      new CliError(
        "credential_file_too_large",
        `${key} ${file}: ${size ?? `over ${MAX_CREDENTIAL_BYTES}`} bytes; a secret or key file is at most ${MAX_CREDENTIAL_BYTES} (64 KiB)`,
        { exitCode: ExitCode.usage, hint: only },
      ),
  });
}

function readPrivateFile(
  config: Config,
  key: "client_secret_file" | "client_key_file",
  file: string,
  onWarning?: CredentialWarning,
): string {
  let text: string;
  try {
    text = readRegularFile(
      key,
      file,
      trustedCredentialPath(key, file, config.credentialsDirectory, onWarning),
    );
  } catch (e) {
    if (e instanceof CliError) throw e;
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

export function readClientSecret(config: Config, onWarning?: CredentialWarning): string {
  if (config.clientSecretFile === undefined) throw notServiceAccount(config);
  return readPrivateFile(config, "client_secret_file", config.resolveClientSecretFile(), onWarning);
}

/**
 * The text of a private_key_jwt client's key file; ../oidc/client-key.ts parses it (node:crypto is
 * too heavy for the files-only start-up path).
 */
export function readClientKeyText(
  config: Config,
  onWarning?: CredentialWarning,
): { keyText: string; keyFile: string } {
  if (config.clientKeyFile === undefined) throw notServiceAccount(config);
  const keyFile = config.resolveClientKeyFile();
  return { keyText: readPrivateFile(config, "client_key_file", keyFile, onWarning), keyFile };
}

/** The service account's credential: the key for private_key_jwt, else the secret. */
export function readClientCredential(config: Config, onWarning?: CredentialWarning): ClientCredential {
  return config.clientKeyFile !== undefined
    ? readClientKeyText(config, onWarning)
    : { secret: readClientSecret(config, onWarning) };
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
    notify: (line) => ctx.stderr.write(`note: ${oneLine(line)}\n`),
    maxWaitMs: (4 * config.timeoutSeconds + 30) * 1000,
  };
}
