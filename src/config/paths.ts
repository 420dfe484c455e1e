import { isAbsolute, join } from "node:path";
import { CliError, ExitCode } from "../errors.ts";
import type { Env } from "../os/env.ts";

function home(env: Env): string {
  const h = env.HOME;
  if (h === undefined || h === "") {
    throw new CliError("home_not_set", "HOME is not set", {
      exitCode: ExitCode.usage,
      hint: "set HOME to your home directory",
    });
  }
  return h;
}

/** XDG base directories fall back to the spec's defaults when unset or not absolute. */
const XDG_DEFAULTS: Record<string, string[]> = {
  XDG_CONFIG_HOME: [".config"],
  XDG_STATE_HOME: [".local", "state"],
  XDG_CACHE_HOME: [".cache"],
  XDG_DATA_HOME: [".local", "share"],
};

export function xdgDir(env: Env, name: keyof typeof XDG_DEFAULTS & string): string {
  const value = env[name];
  if (value !== undefined && isAbsolute(value)) return value;
  return join(home(env), ...(XDG_DEFAULTS[name] ?? []));
}

/**
 * Expands `$VAR`, `${VAR}` and a leading `~/` in a path. An unset variable is an error, never an
 * empty string: `$FOO/netrc` must not silently become `/netrc`.
 */
export function expandPath(raw: string, env: Env, where: string): string {
  let text = raw;
  if (text === "~" || text.startsWith("~/")) text = home(env) + text.slice(1);
  const missing: string[] = [];
  const out = text.replace(
    /\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))/g,
    (_m, braced, bare) => {
      const name = (braced ?? bare) as string;
      // XDG variables follow the spec: a relative value is ignored like an unset one.
      if (name in XDG_DEFAULTS) return xdgDir(env, name);
      const value = env[name];
      if (value !== undefined && value !== "") return value;
      if (name === "HOME") return home(env);
      missing.push(name);
      return "";
    },
  );
  if (missing.length > 0) {
    throw new CliError(
      "variable_not_set",
      `${where}: environment variable${missing.length > 1 ? "s" : ""} ${missing.map((n) => `$${n}`).join(", ")} ${missing.length > 1 ? "are" : "is"} not set`,
      {
        exitCode: ExitCode.usage,
        hint: "set the variable, or write the path out in full",
      },
    );
  }
  if (!isAbsolute(out)) {
    throw new CliError("path_not_absolute", `${where}: ${JSON.stringify(raw)} is not an absolute path`, {
      exitCode: ExitCode.usage,
      hint: "use an absolute path, ~/..., or one starting with a variable such as $XDG_CONFIG_HOME",
    });
  }
  return out;
}

export function stateDir(env: Env): string {
  return join(xdgDir(env, "XDG_STATE_HOME"), "nix-cache-login");
}
