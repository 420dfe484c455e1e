import { isAbsolute, join, resolve } from "node:path";
import { CliError, ExitCode } from "../errors.ts";
import type { Env } from "../os/env.ts";
import { expandPath, xdgDir } from "./paths.ts";

export interface ConfigCandidate {
  path: string;
  source: string;
  /** An explicitly named file must exist; the defaults are tried in order. */
  explicit: boolean;
}

export const SYSTEM_CONFIG = "/etc/nix-cache-login/config.toml";

/** The search order, as documented in --help and docs/configuration.md. */
export function configCandidates(flag: string | undefined, env: Env): ConfigCandidate[] {
  // A file named on the command line (or in the variable) may be relative to the working directory,
  // as with any other command; paths inside the configuration must be absolute.
  const named = (raw: string, where: string) =>
    expandPath(isAbsolute(raw) || /^[~$]/.test(raw) ? raw : resolve(raw), env, where);
  if (flag !== undefined) return [{ path: named(flag, "--config"), source: "--config", explicit: true }];
  const fromEnv = env.NIX_CACHE_LOGIN_CONFIG;
  if (fromEnv !== undefined && fromEnv !== "") {
    return [
      {
        path: named(fromEnv, "$NIX_CACHE_LOGIN_CONFIG"),
        source: "$NIX_CACHE_LOGIN_CONFIG",
        explicit: true,
      },
    ];
  }
  return [
    {
      path: join(xdgDir(env, "XDG_CONFIG_HOME"), "nix-cache-login", "config.toml"),
      source: "$XDG_CONFIG_HOME",
      explicit: false,
    },
    { path: SYSTEM_CONFIG, source: "system", explicit: false },
  ];
}

/** No configuration where it was looked for: the file named, or any of the search order. */
export function configNotFound(message: string, hint?: string): CliError {
  return new CliError("config_not_found", message, { exitCode: ExitCode.usage, hint });
}

export function noConfigError(tried: ConfigCandidate[]): CliError {
  const list = tried.map((c) => `${c.path} (${c.source})`).join(", ");
  return configNotFound(
    `no configuration file found; tried: ${list}`,
    "write one with `nix-cache-login init --issuer URL --client-id ID --cache-host HOST`, or pass --config PATH",
  );
}
