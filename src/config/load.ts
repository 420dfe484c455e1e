import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { join } from "node:path";
import { parse as parseToml, TomlError } from "smol-toml";
import { parseDuration } from "../duration.ts";
import { CliError, ExitCode } from "../errors.ts";
import { fsReason } from "../fs-reason.ts";
import { isLoopbackHost } from "../loopback-host.ts";
import { closest } from "../suggest.ts";
import { configCandidates, noConfigError, type ConfigCandidate } from "./find.ts";
import { expandPath, xdgDir, type Env } from "./paths.ts";

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
  mode: "user" | "service-account";
  scopes: string[] | undefined;
  callbackPort: number | undefined;
  timeoutSeconds: number;
  /** Seconds an access token is taken to live when the provider does not say (opaque, no expires_in). */
  defaultTokenLifetime: number;
}

export interface CacheHost {
  /** As written, may carry a port: `cache.example.org:8443`. */
  host: string;
  /** The netrc machine name: curl matches the host only, never `host:port`. */
  machine: string;
  /** The cache's base URL, for `doctor`: from `cache_url`, else `https://<host>`. */
  url: string;
}

/** `strings` is one string or a non-empty list of them. */
type KeyType = "string" | "string[]" | "strings" | "integer";

export const TOKEN_ENDPOINT_AUTH_METHODS = [
  "client_secret_basic",
  "client_secret_post",
  "private_key_jwt",
] as const;
export type TokenEndpointAuthMethod = (typeof TOKEN_ENDPOINT_AUTH_METHODS)[number];

const KEYS: Record<string, { type: KeyType; required: boolean }> = {
  issuer: { type: "string", required: true },
  client_id: { type: "string", required: true },
  cache_host: { type: "strings", required: true },
  netrc_path: { type: "string", required: false },
  client_secret_file: { type: "string", required: false },
  client_key_file: { type: "string", required: false },
  token_endpoint_auth_method: { type: "string", required: false },
  scopes: { type: "string[]", required: false },
  callback_port: { type: "integer", required: false },
  cache_url: { type: "strings", required: false },
  timeout: { type: "string", required: false },
  default_token_lifetime: { type: "string", required: false },
};

/** A configuration file is a few hundred bytes; a bigger one is a mistake (or not a config). */
export const MAX_CONFIG_BYTES = 1024 * 1024;
/** Problems listed at most, so that a wrong file (a binary, a log) does not flood the terminal. */
export const MAX_PROBLEMS = 20;
/** setTimeout's limit (2^31 - 1 ms, about 24.8 days): a longer delay fires at once. */
export const MAX_DELAY_SECONDS = Math.floor(0x7fffffff / 1000);
export const CONFIG_KEYS = Object.keys(KEYS);

export { isLoopbackHost } from "../loopback-host.ts";

function closestKey(key: string): string | undefined {
  return closest(key.toLowerCase().replace(/-/g, "_"), CONFIG_KEYS);
}

function describeType(value: unknown): string {
  if (Array.isArray(value)) return "an array";
  if (value instanceof Date) return "a date";
  if (value === null) return "null";
  if (typeof value === "object") return "a table";
  return `a ${typeof value}`;
}

/** Validates a parsed TOML document, collecting every problem before failing. */
export function validateConfig(doc: Record<string, unknown>, file: string, source: string, env: Env): Config {
  const problems: string[] = [];
  const bad = (key: string, message: string) => problems.push(`${file}: ${key}: ${message}`);

  for (const key of Object.keys(doc)) {
    if (!(key in KEYS)) {
      const suggestion = closestKey(key);
      bad(key, `unknown key${suggestion === undefined ? "" : ` (did you mean ${suggestion}?)`}`);
    }
  }
  const values: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(KEYS)) {
    const value = doc[key];
    if (value === undefined) {
      if (spec.required) bad(key, "missing (required)");
      continue;
    }
    const stringArray = Array.isArray(value) && value.every((v) => typeof v === "string");
    const ok =
      spec.type === "string"
        ? typeof value === "string"
        : spec.type === "integer"
          ? typeof value === "bigint" || (typeof value === "number" && Number.isInteger(value))
          : spec.type === "strings"
            ? typeof value === "string" || stringArray
            : stringArray;
    if (!ok) {
      const want =
        spec.type === "string[]"
          ? "an array of strings"
          : spec.type === "strings"
            ? "a string or an array of strings"
            : spec.type === "integer"
              ? "an integer"
              : "a string";
      const got = Array.isArray(value)
        ? `an array${spec.type === "string[]" || spec.type === "strings" ? ` containing ${describeType(value.find((v) => typeof v !== "string"))}` : ""}`
        : describeType(value);
      bad(key, `must be ${want}, got ${got}`);
      continue;
    }
    if (spec.type === "string" && (value as string).trim() === "") {
      bad(key, "must not be empty");
      continue;
    }
    if (spec.type === "strings" && Array.isArray(value) && value.length === 0) {
      bad(key, "must not be an empty array");
      continue;
    }
    values[key] = typeof value === "bigint" ? Number(value) : value;
  }

  let issuer: string | undefined;
  if (typeof values.issuer === "string") {
    let url: URL | undefined;
    try {
      url = new URL(values.issuer);
    } catch {
      bad("issuer", `${JSON.stringify(values.issuer)} is not a URL`);
    }
    if (url !== undefined) {
      if (url.protocol !== "https:" && url.protocol !== "http:") {
        bad("issuer", `must be an https URL, got ${url.protocol.replace(/:$/, "")}`);
      } else if (url.protocol === "http:" && !isLoopbackHost(url.hostname)) {
        bad("issuer", "must use https (only loopback hosts may use http)");
      } else if (url.search !== "" || url.hash !== "" || url.username !== "" || url.password !== "") {
        bad("issuer", "must not contain a query, fragment or credentials");
      } else {
        // Kept exactly as written: discovery compares the issuer byte for byte (RFC 8414 section 3.3).
        issuer = values.issuer;
      }
    }
  }

  const cacheHosts = validateCacheHosts(values.cache_host, values.cache_url, bad);

  let callbackPort: number | undefined;
  if (typeof values.callback_port === "number") {
    if (values.callback_port < 1 || values.callback_port > 65535) bad("callback_port", "must be 1-65535");
    else callbackPort = values.callback_port;
  }

  let timeoutSeconds = 30;
  if (typeof values.timeout === "string") {
    try {
      timeoutSeconds = parseDuration(values.timeout, "timeout");
      if (timeoutSeconds <= 0) bad("timeout", "must be greater than zero");
      else if (timeoutSeconds > MAX_DELAY_SECONDS) bad("timeout", "must be at most 24d");
    } catch {
      bad("timeout", `invalid duration ${JSON.stringify(values.timeout)} (e.g. 30s, 2m)`);
    }
  }

  let defaultTokenLifetime = 300;
  if (typeof values.default_token_lifetime === "string") {
    try {
      defaultTokenLifetime = parseDuration(values.default_token_lifetime, "default_token_lifetime");
      if (defaultTokenLifetime <= 0) bad("default_token_lifetime", "must be greater than zero");
    } catch {
      bad(
        "default_token_lifetime",
        `invalid duration ${JSON.stringify(values.default_token_lifetime)} (e.g. 5m, 1h)`,
      );
    }
  }

  const expand = (key: string): string | undefined => {
    const v = values[key];
    if (typeof v !== "string") return undefined;
    try {
      return expandPath(v, env, `${file}: ${key}`);
    } catch (e) {
      problems.push(e instanceof Error ? e.message : String(e));
      return undefined;
    }
  };
  const netrcPath =
    values.netrc_path === undefined
      ? join(xdgDir(env, "XDG_CONFIG_HOME"), "nix", "netrc")
      : expand("netrc_path");
  const rawSecretFile = typeof values.client_secret_file === "string" ? values.client_secret_file : undefined;
  // A path without variables is checked now; one with variables when the secret is read.
  if (rawSecretFile !== undefined && !rawSecretFile.includes("$")) expand("client_secret_file");
  const rawKeyFile = typeof values.client_key_file === "string" ? values.client_key_file : undefined;
  if (rawKeyFile !== undefined && !rawKeyFile.includes("$")) expand("client_key_file");

  let authMethod: TokenEndpointAuthMethod | undefined;
  if (typeof values.token_endpoint_auth_method === "string") {
    const m = values.token_endpoint_auth_method;
    if ((TOKEN_ENDPOINT_AUTH_METHODS as readonly string[]).includes(m))
      authMethod = m as TokenEndpointAuthMethod;
    else {
      const suggestion = closest(m.toLowerCase(), [...TOKEN_ENDPOINT_AUTH_METHODS]);
      bad(
        "token_endpoint_auth_method",
        `${JSON.stringify(m)} is not one of ${TOKEN_ENDPOINT_AUTH_METHODS.join(", ")}${suggestion === undefined ? "" : ` (did you mean ${suggestion}?)`}`,
      );
    }
  }
  if (rawSecretFile !== undefined && rawKeyFile !== undefined) {
    bad("client_key_file", "set either client_secret_file or client_key_file, not both");
  } else if (authMethod === "private_key_jwt" && rawKeyFile === undefined) {
    bad("token_endpoint_auth_method", "private_key_jwt needs client_key_file (the client's private key)");
  } else if (authMethod !== undefined && authMethod !== "private_key_jwt" && rawKeyFile !== undefined) {
    bad(
      "token_endpoint_auth_method",
      `${authMethod} sends a client secret; with client_key_file use private_key_jwt (or leave it out)`,
    );
  } else if (authMethod !== undefined && rawSecretFile === undefined && rawKeyFile === undefined) {
    bad(
      "token_endpoint_auth_method",
      "only for service accounts: set client_secret_file or client_key_file too (a user sign-in client is public)",
    );
  }
  if (rawKeyFile !== undefined) authMethod = "private_key_jwt";

  if (problems.length > 0) {
    const shown = problems.slice(0, MAX_PROBLEMS);
    if (problems.length > MAX_PROBLEMS) shown.push(`... and ${problems.length - MAX_PROBLEMS} more problems`);
    throw new CliError(
      problems.length === 1 ? (problems[0] as string) : `invalid configuration:\n  ${shown.join("\n  ")}`,
      {
        exitCode: ExitCode.usage,
        hint: "fix the configuration file (keys are listed in `nix-cache-login --help`)",
      },
    );
  }
  return {
    path: file,
    source,
    issuer: issuer as string,
    clientId: values.client_id as string,
    cacheHosts: cacheHosts as CacheHost[],
    machines: netrcMachines(cacheHosts as CacheHost[]),
    netrcPath: netrcPath as string,
    clientSecretFile: rawSecretFile,
    resolveClientSecretFile: () => expandPath(rawSecretFile ?? "", env, `${file}: client_secret_file`),
    tokenEndpointAuthMethod: authMethod,
    clientKeyFile: rawKeyFile,
    resolveClientKeyFile: () => expandPath(rawKeyFile ?? "", env, `${file}: client_key_file`),
    mode: rawSecretFile === undefined && rawKeyFile === undefined ? "user" : "service-account",
    scopes: values.scopes as string[] | undefined,
    callbackPort,
    timeoutSeconds,
    defaultTokenLifetime,
  };
}

/** netrc machine names compare without case: the first spelling of each is kept. */
function netrcMachines(hosts: CacheHost[]): string[] {
  const byName = new Map<string, string>();
  for (const h of hosts)
    if (!byName.has(h.machine.toLowerCase())) byName.set(h.machine.toLowerCase(), h.machine);
  return [...byName.values()];
}

function asList(value: unknown): string[] | undefined {
  if (typeof value === "string") return [value];
  return Array.isArray(value) ? (value as string[]) : undefined;
}

/**
 * `cache_host` (one host or a list) and `cache_url` (one URL or a list, each naming one of the
 * hosts): every host gets its netrc machine name and the URL `doctor` asks.
 */
function validateCacheHosts(
  hostValue: unknown,
  urlValue: unknown,
  bad: (key: string, message: string) => void,
): CacheHost[] | undefined {
  const rawHosts = asList(hostValue);
  const list = Array.isArray(hostValue);
  let ok = rawHosts !== undefined;
  const hosts: CacheHost[] = [];
  for (const [i, raw] of (rawHosts ?? []).entries()) {
    const key = list ? `cache_host[${i}]` : "cache_host";
    const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/.exec(raw);
    if (raw.trim() === "") bad(key, "must not be empty");
    else if (raw.includes("://")) bad(key, "must be a host name without a scheme (e.g. cache.example.org)");
    else if (/[/?#]/.test(raw)) bad(key, "must be a host name without a path (e.g. cache.example.org)");
    else if (m === null) bad(key, `${JSON.stringify(raw)} is not a host name`);
    else if (m[2] !== undefined && (Number(m[2]) < 1 || Number(m[2]) > 65535))
      bad(key, `port ${m[2]} is not in 1-65535`);
    else if (hosts.some((h) => h.host.toLowerCase() === raw.toLowerCase()))
      bad(key, `${JSON.stringify(raw)} is listed twice`);
    else {
      hosts.push({ host: raw, machine: (m[1] as string).replace(/^\[|\]$/g, ""), url: `https://${raw}` });
      continue;
    }
    ok = false;
  }

  const rawUrls = asList(urlValue) ?? [];
  const urlsListed = Array.isArray(urlValue);
  const claimed = new Set<CacheHost>();
  for (const [i, raw] of rawUrls.entries()) {
    const key = urlsListed ? `cache_url[${i}]` : "cache_url";
    let u: URL;
    try {
      u = new URL(raw);
    } catch {
      bad(key, `${JSON.stringify(raw)} is not a URL`);
      continue;
    }
    if (u.protocol !== "https:" && u.protocol !== "http:") {
      bad(key, "must be an https URL");
      continue;
    }
    if (u.protocol === "http:" && !isLoopbackHost(u.hostname)) {
      // The token goes there in clear otherwise (doctor sends it).
      bad(key, "must use https (only loopback hosts may use http)");
      continue;
    }
    if (!ok) continue;
    const hostname = u.hostname.replace(/^\[|\]$/g, "").toLowerCase();
    const owners = hosts.filter((h) => h.machine.toLowerCase() === hostname);
    // Two hosts that differ only by port: the URL's port says which one it is for.
    const owner =
      owners.length <= 1
        ? owners[0]
        : (owners.find((h) => new URL(`https://${h.host}`).port === u.port) ?? owners[0]);
    if (owner === undefined) {
      const names = hosts.map((h) => h.machine).join(", ");
      bad(key, `host ${u.hostname} does not match cache_host ${names}`);
    } else if (claimed.has(owner)) {
      bad(key, `a second URL for cache_host ${owner.host}`);
    } else {
      claimed.add(owner);
      owner.url = raw.replace(/\/+$/, "");
    }
  }
  return ok ? hosts : undefined;
}

/** The file's text, read up to MAX_CONFIG_BYTES (a FIFO or device is not a configuration). */
function readCapped(path: string): string {
  const fd = openSync(path, "r");
  try {
    const st = fstatSync(fd);
    if (st.isDirectory()) throw Object.assign(new Error("is a directory"), { code: "EISDIR" });
    if (!st.isFile())
      throw new CliError(`${path}: the configuration is not a regular file`, { exitCode: ExitCode.usage });
    if (st.size > MAX_CONFIG_BYTES) {
      throw new CliError(
        `${path}: the configuration file is ${st.size} bytes; at most ${MAX_CONFIG_BYTES} (1 MiB) are read`,
        { exitCode: ExitCode.usage, hint: "check that --config names the configuration file" },
      );
    }
    const buf = Buffer.alloc(st.size);
    let done = 0;
    while (done < buf.length) {
      const n = readSync(fd, buf, done, buf.length - done, done);
      if (n === 0) break;
      done += n;
    }
    return buf.toString("utf8", 0, done);
  } finally {
    closeSync(fd);
  }
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
      throw new CliError(`${c.path}: configuration file not found (from ${c.source})`, {
        exitCode: ExitCode.usage,
      });
    }
    throw new CliError(`${c.path}: cannot read configuration (from ${c.source}): ${fsReason(e)}`, {
      exitCode: ExitCode.usage,
    });
  }
}

export async function loadConfig(flag: string | undefined, env: Env): Promise<Config> {
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
      throw new CliError(`${c.path}: ${where}invalid TOML: ${first}`, { exitCode: ExitCode.usage });
    }
    return validateConfig(doc, c.path, c.source, env);
  }
  throw noConfigError(candidates);
}
