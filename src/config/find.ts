import { isAbsolute, join, resolve } from "node:path";
import { CliError, ExitCode } from "../errors.ts";
import { expandPath, xdgDir, type Env } from "./paths.ts";

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

export function noConfigError(tried: ConfigCandidate[]): CliError {
  const list = tried.map((c) => `${c.path} (${c.source})`).join(", ");
  return new CliError(`no configuration file found; tried: ${list}`, {
    code: "config_not_found",
    exitCode: ExitCode.usage,
    hint: "create one (see `nix-cache-login --help`), or pass --config PATH",
  });
}
