import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse as parseToml, TomlError } from "smol-toml";
import { CliError, ExitCode } from "../errors.ts";
import { closest } from "../suggest.ts";
import { configCandidates, noConfigError, type ConfigCandidate } from "./find.ts";
import {
  checked,
  CONFIG_KEYS,
  Problem,
  RULES,
  typed,
  type CacheHost,
  type TokenEndpointAuthMethod,
} from "./rules.ts";
import { expandPath, xdgDir, type Env } from "./paths.ts";

export interface Config {
  /** The file the configuration came from. */
  path: string;
  source: string;
  issuer: string;
  clientId: string;
  /** As written, may carry a port: `cache.example.org:8443`. */
  cacheHost: string;
  /** The netrc machine name: curl matches the host only, never `host:port`. */
  machine: string;
  netrcPath: string;
  /** As written (for messages); may name variables that only exist where the secret is read. */
  clientSecretFile: string | undefined;
  /**
   * The secret file's path, expanded when needed: `${CREDENTIALS_DIRECTORY}` exists only inside
   * the systemd unit, and `status` in an admin shell must still work.
   */
  resolveClientSecretFile: () => string;
  /**
   * How a service account proves itself at the token endpoint; undefined: client_secret_basic,
   * unless the provider's discovery document offers only client_secret_post.
   */
  tokenEndpointAuthMethod: TokenEndpointAuthMethod | undefined;
  /** As written; private_key_jwt (Keycloak's "Signed JWT" client authenticator). */
  clientKeyFile: string | undefined;
  resolveClientKeyFile: () => string;
  mode: "user" | "service-account";
  scopes: string[] | undefined;
  callbackPort: number | undefined;
  cacheUrl: string;
  timeoutSeconds: number;
}

/** Validates a parsed TOML document by the rules of ./rules.ts, collecting every problem first. */
export function validateConfig(doc: Record<string, unknown>, file: string, source: string, env: Env): Config {
  const problems: string[] = [];
  const report = (key: string, e: unknown) => {
    if (e instanceof Problem) problems.push(`${file}: ${key}: ${e.message}`);
    else if (e instanceof CliError) problems.push(e.message);
    else throw e;
  };

  for (const key of Object.keys(doc)) {
    if (!(key in RULES)) {
      const suggestion = closest(key.toLowerCase().replace(/-/g, "_"), CONFIG_KEYS);
      problems.push(
        `${file}: ${key}: unknown key${suggestion === undefined ? "" : ` (did you mean ${suggestion}?)`}`,
      );
    }
  }
  const values: Record<string, unknown> = {};
  for (const [key, r] of Object.entries(RULES)) {
    if (doc[key] === undefined) {
      if (r.required === true) problems.push(`${file}: ${key}: missing (required)`);
      continue;
    }
    try {
      values[key] = typed(r, doc[key]);
    } catch (e) {
      report(key, e);
    }
  }
  const ok: Record<string, unknown> = {};
  for (const [key, r] of Object.entries(RULES)) {
    if (!(key in values)) continue;
    try {
      ok[key] = checked(r, values[key], { file, key, env, typed: values, checked: ok });
    } catch (e) {
      report(key, e);
    }
  }
  // The default netrc is where Nix looks by default (see nix.conf netrc-file), for this user.
  if (values.netrc_path === undefined) ok.netrc_path = join(xdgDir(env, "XDG_CONFIG_HOME"), "nix", "netrc");

  if (problems.length > 0) {
    throw new CliError(
      problems.length === 1 ? (problems[0] as string) : `invalid configuration:\n  ${problems.join("\n  ")}`,
      {
        exitCode: ExitCode.usage,
        code: "config_invalid",
        hint: "fix the configuration file (keys are listed in `nix-cache-login --help`)",
      },
    );
  }
  const host = ok.cache_host as CacheHost;
  const secretFile = ok.client_secret_file as string | undefined;
  const keyFile = ok.client_key_file as string | undefined;
  return {
    path: file,
    source,
    issuer: ok.issuer as string,
    clientId: ok.client_id as string,
    cacheHost: host.cacheHost,
    machine: host.machine,
    netrcPath: ok.netrc_path as string,
    clientSecretFile: secretFile,
    resolveClientSecretFile: () => expandPath(secretFile ?? "", env, `${file}: client_secret_file`),
    // A key file means private_key_jwt, whether the method is written or not.
    tokenEndpointAuthMethod:
      keyFile !== undefined
        ? "private_key_jwt"
        : (ok.token_endpoint_auth_method as TokenEndpointAuthMethod | undefined),
    clientKeyFile: keyFile,
    resolveClientKeyFile: () => expandPath(keyFile ?? "", env, `${file}: client_key_file`),
    mode: secretFile === undefined && keyFile === undefined ? "user" : "service-account",
    scopes: ok.scopes as string[] | undefined,
    callbackPort: ok.callback_port as number | undefined,
    cacheUrl: (ok.cache_url as string | undefined) ?? `https://${host.cacheHost}`,
    timeoutSeconds: (ok.timeout as number | undefined) ?? 30,
  };
}

function readCandidate(c: ConfigCandidate): string | undefined {
  try {
    // Synchronous on purpose: a few hundred bytes, and node:fs/promises costs start-up time.
    return readFileSync(c.path, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if ((code === "ENOENT" || code === "ENOTDIR") && !c.explicit) return undefined;
    if (code === "ENOENT") {
      throw new CliError(`${c.path}: configuration file not found (from ${c.source})`, {
        code: "config_not_found",
        exitCode: ExitCode.usage,
      });
    }
    throw new CliError(`${c.path}: cannot read configuration: ${(e as Error).message}`, {
      code: "config_unreadable",
      exitCode: ExitCode.usage,
    });
  }
}

export function loadConfig(flag: string | undefined, env: Env): Config {
  const candidates = configCandidates(flag, env);
  for (const c of candidates) {
    const text = readCandidate(c);
    if (text === undefined) continue;
    let doc: Record<string, unknown>;
    try {
      doc = parseToml(text) as Record<string, unknown>;
    } catch (e) {
      const where = e instanceof TomlError ? `line ${e.line}, column ${e.column}: ` : "";
      const first = ((e as Error).message.split("\n")[0] ?? "").replace(/^Invalid TOML document: /, "");
      throw new CliError(`${c.path}: ${where}invalid TOML: ${first}`, {
        code: "config_syntax",
        exitCode: ExitCode.usage,
      });
    }
    return validateConfig(doc, c.path, c.source, env);
  }
  throw noConfigError(candidates);
}
