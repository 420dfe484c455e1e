import { join } from "node:path";
import { readOpened } from "../fs/read-opened.ts";
import { parse as parseToml, TomlError } from "smol-toml";
import { CliError, ExitCode } from "../errors.ts";
import { foreignOwner, UntrustedPath, walkTrusted, writableByOthers } from "../fs/file-trust.ts";
import { fsReason } from "../fs/fs-errors.ts";
import { closest } from "../suggest.ts";
import { configCandidates, configNotFound, noConfigError, type ConfigCandidate } from "./find.ts";
import {
  checked,
  CONFIG_KEYS,
  Problem,
  Problems,
  RULES,
  typed,
  type HostName,
  type TokenEndpointAuthMethod,
  type TokenStorage,
} from "./rules.ts";
import type { Env } from "../os/env.ts";
import { expandPath, xdgDir } from "./paths.ts";

export interface Config {
  /** The file the configuration came from. */
  path: string;
  source: string;
  issuer: string;
  clientId: string;
  /** Every cache host, in the order written (`cache_host` may be one host or a list). */
  cacheHosts: CacheHost[];
  /**
   * The netrc machine names, each once (`cache:443` and `cache:8443` share one entry): one grant
   * writes the same token into all of them.
   */
  machines: string[];
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
  /**
   * `$CREDENTIALS_DIRECTORY`: files systemd put there for the unit (LoadCredential=) are trusted
   * as they are.
   */
  credentialsDirectory: string | undefined;
  mode: "user" | "service-account";
  scopes: string[] | undefined;
  callbackPort: number | undefined;
  timeoutSeconds: number;
  /** Seconds an access token is taken to live when the provider does not say (opaque, no expires_in). */
  defaultTokenLifetime: number;
  /** Where a user sign-in keeps its refresh token: the OS keychain when one answers, or the state file. */
  tokenStorage: TokenStorage;
}

export interface CacheHost extends HostName {
  /** The cache's base URL, for `doctor`: from `cache_url`, else `https://<host>`. */
  url: string;
}

/** netrc machine names compare without case: the first spelling of each is kept. */
function netrcMachines(hosts: readonly HostName[]): string[] {
  const byName = new Map<string, string>();
  for (const h of hosts)
    if (!byName.has(h.machine.toLowerCase())) byName.set(h.machine.toLowerCase(), h.machine);
  return [...byName.values()];
}

/** A configuration file is a few hundred bytes; a bigger one is a mistake (or not a config). */
export const MAX_CONFIG_BYTES = 1024 * 1024;
/** Problems listed at most, so that a wrong file (a binary, a log) does not flood the terminal. */
export const MAX_PROBLEMS = 20;

/** Validates a parsed TOML document by the rules of ./rules.ts, collecting every problem first. */
export function validateConfig(doc: Record<string, unknown>, file: string, source: string, env: Env): Config {
  const problems: string[] = [];
  const report = (key: string, e: unknown) => {
    if (e instanceof Problem) problems.push(`${file}: ${key}: ${e.message}`);
    else if (e instanceof Problems) for (const i of e.items) problems.push(`${file}: ${i.key}: ${i.message}`);
    else if (e instanceof CliError) problems.push(e.message);
    else throw e;
  };

  for (const key of Object.keys(doc)) {
    if (!Object.hasOwn(RULES, key)) {
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
    const shown = problems.slice(0, MAX_PROBLEMS);
    if (problems.length > MAX_PROBLEMS) shown.push(`... and ${problems.length - MAX_PROBLEMS} more problems`);
    const one = problems.length === 1;
    throw new CliError("config_invalid", one ? (problems[0] as string) : "invalid configuration:", {
      exitCode: ExitCode.usage,
      hint: "fix the configuration file (keys are listed in `nix-cache-login --help`)",
      ...(one ? {} : { items: shown }),
    });
  }
  const urls = (ok.cache_url as Map<string, string> | undefined) ?? new Map<string, string>();
  const cacheHosts = (ok.cache_host as HostName[]).map((h) => ({
    ...h,
    url: urls.get(h.host) ?? `https://${h.host}`,
  }));
  const secretFile = ok.client_secret_file as string | undefined;
  const keyFile = ok.client_key_file as string | undefined;
  return {
    path: file,
    source,
    issuer: ok.issuer as string,
    clientId: ok.client_id as string,
    cacheHosts,
    machines: netrcMachines(cacheHosts),
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
    credentialsDirectory: env.CREDENTIALS_DIRECTORY,
    mode: secretFile === undefined && keyFile === undefined ? "user" : "service-account",
    scopes: ok.scopes as string[] | undefined,
    callbackPort: ok.callback_port as number | undefined,
    timeoutSeconds: (ok.timeout as number | undefined) ?? 30,
    defaultTokenLifetime: (ok.default_token_lifetime as number | undefined) ?? 300,
    tokenStorage: (ok.token_storage as TokenStorage | undefined) ?? "auto",
  };
}

function untrustedConfig(path: string, why: string, fix: string): CliError {
  return new CliError(
    "config_untrusted",
    `${path}: the configuration ${why}, so another user could have written it; nix-cache-login does not use it`,
    { exitCode: ExitCode.usage, hint: fix },
  );
}

/**
 * The configuration chooses the issuer, and so where a client secret goes: it is read only when no
 * other user could have written it (the token state's rule, ../fs/file-trust.ts): the file and
 * every directory on its path, through any symbolic link, are ours or root's, and no one else may
 * write them. Returns the path with its links resolved and the file's identity; a missing file is
 * thrown as ENOENT (or ENOTDIR).
 */
function trustedConfigPath(path: string): { real: string; dev: number; ino: number } {
  let walked;
  try {
    walked = walkTrusted(path);
  } catch (e) {
    if (!(e instanceof UntrustedPath)) throw e;
    throw untrustedConfig(path, e.at === path ? `is ${e.why}` : `path goes through ${e.at}, ${e.why}`, e.fix);
  }
  const st = walked.st;
  if (st === undefined) {
    const code = walked.missing ?? "ENOENT";
    throw Object.assign(new Error(code), { code });
  }
  const shown = walked.real === path ? path : `${path} (a symbolic link to ${walked.real})`;
  const owner = foreignOwner(st);
  if (owner !== undefined) {
    throw untrustedConfig(
      shown,
      `file is ${owner}`,
      `check who made it; use a configuration file of your own (or root's)`,
    );
  }
  const writable = writableByOthers(st);
  if (writable !== undefined && !st.isDirectory()) {
    throw untrustedConfig(
      shown,
      `file is ${writable}`,
      `check its contents, then \`chmod go-w ${walked.real}\``,
    );
  }
  return { real: walked.real, dev: st.dev, ino: st.ino };
}

/** The file's text, read up to MAX_CONFIG_BYTES (a FIFO or device is not a configuration). */
function readCapped(path: string): string {
  const trusted = trustedConfigPath(path);
  // The walk made sure no other user can swap what the path names; O_NOFOLLOW and the identity
  // check keep it that way between the walk and the read.
  return readOpened(trusted.real, {
    noFollow: true,
    check(st) {
      if (st.dev !== trusted.dev || st.ino !== trusted.ino) {
        throw new CliError("config_changed", `${path}: the configuration file changed while it was read`, {
          exitCode: ExitCode.usage,
          hint: "run the command again",
        });
      }
      if (!st.isFile() && !st.isDirectory())
        throw new CliError("config_not_regular_file", `${path}: the configuration is not a regular file`, {
          exitCode: ExitCode.usage,
        });
    },
    maxBytes: MAX_CONFIG_BYTES,
    tooLarge: (size) =>
      new CliError(
        "config_too_large",
        `${path}: the configuration file is ${size ?? `over ${MAX_CONFIG_BYTES}`} bytes; at most ${MAX_CONFIG_BYTES} (1 MiB) are read`,
        { exitCode: ExitCode.usage, hint: "check that --config names the configuration file" },
      ),
  });
}

function readCandidate(c: ConfigCandidate): string | undefined {
  try {
    // Synchronous on purpose: a few hundred bytes, and node:fs/promises costs start-up time.
    return readCapped(c.path);
  } catch (e) {
    if (e instanceof CliError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if ((code === "ENOENT" || code === "ENOTDIR") && !c.explicit) return undefined;
    if (code === "ENOENT") {
      throw configNotFound(`${c.path}: configuration file not found (from ${c.source})`);
    }
    throw new CliError(
      "config_unreadable",
      `${c.path}: cannot read configuration (from ${c.source}): ${fsReason(e)}`,
      {
        exitCode: ExitCode.usage,
      },
    );
  }
}

const TOML_SHAPE = 'each line is KEY = VALUE, strings in double quotes: client_id = "nix-cache"';

/** Where the parser stopped, in its words made plainer for the mistakes people make, and a hint. */
function tomlProblem(e: unknown, text: string): { where: string; reason: string; hint: string } {
  const reason = ((e as Error).message.split("\n")[0] ?? "").replace(/^Invalid TOML document: /, "");
  if (!(e instanceof TomlError)) return { where: "", reason, hint: TOML_SHAPE };
  const where = `line ${e.line}, column ${e.column}: `;
  const line = text.split("\n")[e.line - 1] ?? "";
  // smol-toml reports a string left open at the end of its line as a control character (the newline).
  if (
    /control characters are not allowed in strings/.test(reason) &&
    e.column > line.replace(/\r$/, "").length
  ) {
    return {
      where,
      reason: "a string is not closed before the end of the line",
      hint: `add the closing quote on line ${e.line} (${TOML_SHAPE})`,
    };
  }
  if (/unfinished string/.test(reason)) {
    return { where, reason: "a string is not closed", hint: `add the closing quote (${TOML_SHAPE})` };
  }
  if (/invalid value/.test(reason)) {
    return {
      where,
      reason,
      hint: `a value is a string in double quotes, a whole number, or a list ["a", "b"] (${TOML_SHAPE})`,
    };
  }
  if (/redefine/.test(reason)) {
    return { where, reason: "a key is set twice", hint: `keep one of the two on line ${e.line} and above` };
  }
  return { where, reason, hint: TOML_SHAPE };
}

/** A configuration's text -> Config: TOML syntax errors and every bad value name `file`. */
export function parseConfig(text: string, file: string, source: string, env: Env): Config {
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (e) {
    const { where, reason, hint } = tomlProblem(e, text);
    throw new CliError("config_syntax", `${file}: ${where}invalid TOML: ${reason}`, {
      exitCode: ExitCode.usage,
      hint,
    });
  }
  return validateConfig(doc, file, source, env);
}

export function loadConfig(flag: string | undefined, env: Env): Config {
  const candidates = configCandidates(flag, env);
  for (const c of candidates) {
    const text = readCandidate(c);
    if (text !== undefined) return parseConfig(text, c.path, c.source, env);
  }
  throw noConfigError(candidates);
}
