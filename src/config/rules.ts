/**
 * One rule per configuration key: its TOML type, whether it is required, and a check that turns a
 * value of that type into what the configuration holds (or names the problem). ./load.ts runs them
 * all and reports every problem at once. A new key is one entry here.
 */
import { durationProblem, parseDuration } from "../duration.ts";
import { isLoopbackHost } from "../os/loopback-host.ts";
import { closest } from "../suggest.ts";
import type { Env } from "../os/env.ts";
import { expandPath } from "./paths.ts";

/**
 * `strings` is one string or a non-empty list of them; `duration` a string by the one duration rule
 * of ../duration.ts (a value of another TOML type gets that rule's message too).
 */
type KeyType = "string" | "string[]" | "strings" | "integer" | "duration";
type TypeOf<T extends KeyType> = T extends "string" | "duration"
  ? string
  : T extends "integer"
    ? number
    : T extends "strings"
      ? string | string[]
      : string[];

/** What a check sees besides the value. */
export interface RuleContext {
  file: string;
  key: string;
  env: Env;
  /** Every key's value that has the right type, checked or not. */
  typed: Readonly<Record<string, unknown>>;
  /** What the checks of the keys above this one returned (a key with a problem is absent). */
  checked: Readonly<Record<string, unknown>>;
}

/** A problem with the value of the key being checked: reported as `FILE: KEY: message`. */
export class Problem extends Error {}

/** Problems with items of a list, each reported as `FILE: KEY[i]: message`. */
export class Problems extends Error {
  constructor(readonly items: { key: string; message: string }[]) {
    super(items.map((i) => `${i.key}: ${i.message}`).join("; "));
  }
}

interface Rule<T extends KeyType> {
  type: T;
  required?: true;
  /** Turns a value of the right type into what the configuration holds; throws a Problem. */
  check?: (value: TypeOf<T>, c: RuleContext) => unknown;
}

const rule = <T extends KeyType>(r: Rule<T>): Rule<KeyType> => r as unknown as Rule<KeyType>;

/** An https URL, or plain http to a loopback host only: tokens and secrets go there. */
function httpsOrLoopbackUrl(value: string): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new Problem(`${JSON.stringify(value)} is not a URL`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new Problem(`must be an https URL, got ${url.protocol.replace(/:$/, "")}`);
  }
  if (url.protocol === "http:" && !isLoopbackHost(url.hostname)) {
    throw new Problem("must use https (only loopback hosts may use http)");
  }
  return url;
}

function checkIssuer(value: string): string {
  const url = httpsOrLoopbackUrl(value);
  if (url.search !== "" || url.hash !== "" || url.username !== "" || url.password !== "") {
    throw new Problem("must not contain a query, fragment or credentials");
  }
  // Kept exactly as written: discovery compares the issuer byte for byte (RFC 8414 section 3.3).
  return value;
}

/** A cache host as written (may carry a port) and its netrc machine name (curl matches the host only). */
export interface HostName {
  host: string;
  machine: string;
}

function checkHostName(raw: string): HostName {
  if (raw.trim() === "") throw new Problem("must not be empty");
  if (raw.includes("://")) throw new Problem("must be a host name without a scheme (e.g. cache.example.org)");
  if (/[/?#]/.test(raw)) throw new Problem("must be a host name without a path (e.g. cache.example.org)");
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/.exec(raw);
  if (m === null) throw new Problem(`${JSON.stringify(raw)} is not a host name`);
  if (m[2] !== undefined && (Number(m[2]) < 1 || Number(m[2]) > 65535)) {
    throw new Problem(`port ${m[2]} is not in 1-65535`);
  }
  return { host: raw, machine: (m[1] as string).replace(/^\[|\]$/g, "") };
}

/** Runs `check` on every item; problems are named `KEY[i]` for a list, `KEY` for one string. */
function eachItem<T>(value: string | string[], key: string, check: (raw: string, key: string) => T): T[] {
  const list = Array.isArray(value);
  const items = list ? value : [value];
  const out: T[] = [];
  const problems: { key: string; message: string }[] = [];
  items.forEach((raw, i) => {
    const itemKey = list ? `${key}[${i}]` : key;
    try {
      out.push(check(raw, itemKey));
    } catch (e) {
      if (!(e instanceof Problem)) throw e;
      problems.push({ key: itemKey, message: e.message });
    }
  });
  if (problems.length === 1 && !list) throw new Problem((problems[0] as { message: string }).message);
  if (problems.length > 0) throw new Problems(problems);
  return out;
}

/** One host or a list of hosts: one sign-in writes the same token into an entry for each. */
function checkCacheHosts(value: string | string[], c: RuleContext): HostName[] {
  const seen = new Set<string>();
  return eachItem(value, c.key, (raw) => {
    const h = checkHostName(raw);
    if (seen.has(raw.toLowerCase())) throw new Problem(`${JSON.stringify(raw)} is listed twice`);
    seen.add(raw.toLowerCase());
    return h;
  });
}

/**
 * The base URL `doctor` asks, per host where `https://<host>` is not the cache: one URL, or a list
 * whose every URL names one of the hosts. Returns host (as written) -> URL.
 */
function checkCacheUrls(value: string | string[], c: RuleContext): Map<string, string> {
  const hosts = c.checked.cache_host as HostName[] | undefined;
  const urls = new Map<string, string>();
  eachItem(value, c.key, (raw) => {
    // doctor sends the token there.
    const u = httpsOrLoopbackUrl(raw);
    if (hosts === undefined) return;
    const hostname = u.hostname.replace(/^\[|\]$/g, "").toLowerCase();
    const owners = hosts.filter((h) => h.machine.toLowerCase() === hostname);
    // Two hosts that differ only by port: the URL's port says which one it is for.
    const owner =
      owners.length <= 1
        ? owners[0]
        : (owners.find((h) => new URL(`https://${h.host}`).port === u.port) ?? owners[0]);
    if (owner === undefined) {
      throw new Problem(
        `host ${u.hostname} does not match cache_host ${hosts.map((h) => h.machine).join(", ")}`,
      );
    }
    if (urls.has(owner.host)) throw new Problem(`a second URL for cache_host ${owner.host}`);
    urls.set(owner.host, raw.replace(/\/+$/, ""));
  });
  return urls;
}

function checkPort(value: number): number {
  if (value < 1 || value > 65535) throw new Problem("must be 1-65535");
  return value;
}

/** setTimeout's limit (2^31 - 1 ms, about 24.8 days): a longer delay fires at once. */
export const MAX_DELAY_SECONDS = Math.floor(0x7fffffff / 1000);

/** A duration greater than zero, in seconds (its spelling was checked with its type). */
function positiveDuration(value: string, key: string): number {
  const seconds = parseDuration(value, key);
  if (seconds <= 0) throw new Problem("must be greater than zero");
  return seconds;
}

function checkTimeout(value: string): number {
  const seconds = positiveDuration(value, "timeout");
  if (seconds > MAX_DELAY_SECONDS) throw new Problem("must be at most 24d");
  return seconds;
}

/** Seconds an access token is taken to live when the provider does not say (opaque, no expires_in). */
function checkTokenLifetime(value: string): number {
  return positiveDuration(value, "default_token_lifetime");
}

/** Its own message names the file and key: `FILE: netrc_path: environment variable $X is not set`. */
function checkPath(value: string, c: RuleContext): string {
  return expandPath(value, c.env, `${c.file}: ${c.key}`);
}

/**
 * Kept as written: it may name variables that exist only where the secret is read
 * (`${CREDENTIALS_DIRECTORY}` inside the systemd unit). A path without variables is checked now.
 */
function checkSecretFile(value: string, c: RuleContext): string {
  if (!value.includes("$")) checkPath(value, c);
  return value;
}

/** A service account may use only one of them. */
function checkKeyFile(value: string, c: RuleContext): string {
  if (c.typed.client_secret_file !== undefined) {
    throw new Problem("set either client_secret_file or client_key_file, not both");
  }
  return checkSecretFile(value, c);
}

export const TOKEN_ENDPOINT_AUTH_METHODS = [
  "client_secret_basic",
  "client_secret_post",
  "private_key_jwt",
] as const;
export type TokenEndpointAuthMethod = (typeof TOKEN_ENDPOINT_AUTH_METHODS)[number];

/**
 * How a service account proves itself at the token endpoint; left out: client_secret_basic, unless
 * the provider's discovery document offers only client_secret_post (or private_key_jwt with a key).
 */
function checkAuthMethod(value: string, c: RuleContext): TokenEndpointAuthMethod {
  if (!(TOKEN_ENDPOINT_AUTH_METHODS as readonly string[]).includes(value)) {
    const suggestion = closest(value.toLowerCase(), [...TOKEN_ENDPOINT_AUTH_METHODS]);
    throw new Problem(
      `${JSON.stringify(value)} is not one of ${TOKEN_ENDPOINT_AUTH_METHODS.join(", ")}${suggestion === undefined ? "" : ` (did you mean ${suggestion}?)`}`,
    );
  }
  const method = value as TokenEndpointAuthMethod;
  const secretFile = c.typed.client_secret_file;
  const keyFile = c.typed.client_key_file;
  // Both files set is client_key_file's problem.
  if (secretFile !== undefined && keyFile !== undefined) return method;
  if (method === "private_key_jwt" && keyFile === undefined) {
    throw new Problem("private_key_jwt needs client_key_file (the client's private key)");
  }
  if (method !== "private_key_jwt" && keyFile !== undefined) {
    throw new Problem(
      `${method} sends a client secret; with client_key_file use private_key_jwt (or leave it out)`,
    );
  }
  if (secretFile === undefined && keyFile === undefined) {
    throw new Problem(
      "only for service accounts: set client_secret_file or client_key_file too (a user sign-in client is public)",
    );
  }
  return method;
}

export const TOKEN_STORAGES = ["auto", "keychain", "file"] as const;
export type TokenStorage = (typeof TOKEN_STORAGES)[number];

/** Where a user sign-in keeps its refresh token (a service account keeps none). */
function checkTokenStorage(value: string): TokenStorage {
  if (!(TOKEN_STORAGES as readonly string[]).includes(value)) {
    const suggestion = closest(value.toLowerCase(), [...TOKEN_STORAGES]);
    throw new Problem(
      `${JSON.stringify(value)} is not one of ${TOKEN_STORAGES.join(", ")}${suggestion === undefined ? "" : ` (did you mean ${suggestion}?)`}`,
    );
  }
  return value as TokenStorage;
}

/**
 * Problems are reported in two rounds, each in this order: first every key's type (and required
 * keys missing), then every check.
 */
export const RULES: Record<string, Rule<KeyType>> = {
  issuer: rule({ type: "string", required: true, check: checkIssuer }),
  client_id: rule({ type: "string", required: true }),
  cache_host: rule({ type: "strings", required: true, check: checkCacheHosts }),
  netrc_path: rule({ type: "string", check: checkPath }),
  client_secret_file: rule({ type: "string", check: checkSecretFile }),
  client_key_file: rule({ type: "string", check: checkKeyFile }),
  token_endpoint_auth_method: rule({ type: "string", check: checkAuthMethod }),
  scopes: rule({ type: "string[]" }),
  cache_url: rule({ type: "strings", check: checkCacheUrls }),
  callback_port: rule({ type: "integer", check: checkPort }),
  timeout: rule({ type: "duration", check: checkTimeout }),
  default_token_lifetime: rule({ type: "duration", check: checkTokenLifetime }),
  token_storage: rule({ type: "string", check: checkTokenStorage }),
};

export const CONFIG_KEYS = Object.keys(RULES);

function describeType(value: unknown): string {
  if (Array.isArray(value)) return "an array";
  if (value instanceof Date) return "a date";
  if (value === null) return "null";
  if (typeof value === "object") return "a table";
  return `a ${typeof value}`;
}

/** The value in the rule's type (a TOML integer may be a bigint), or a Problem. */
export function typed(r: Rule<KeyType>, value: unknown): unknown {
  if (r.type === "duration") {
    const problem = durationProblem(value);
    if (problem !== undefined) throw new Problem(problem);
    return value;
  }
  const stringArray = Array.isArray(value) && value.every((v) => typeof v === "string");
  const ok =
    r.type === "string"
      ? typeof value === "string"
      : r.type === "integer"
        ? typeof value === "bigint" || (typeof value === "number" && Number.isInteger(value))
        : r.type === "strings"
          ? typeof value === "string" || stringArray
          : stringArray;
  if (!ok) {
    const want =
      r.type === "string[]"
        ? "an array of strings"
        : r.type === "strings"
          ? "a string or an array of strings"
          : r.type === "integer"
            ? "an integer"
            : "a string";
    const got = Array.isArray(value)
      ? `an array${r.type === "string[]" || r.type === "strings" ? ` containing ${describeType(value.find((v) => typeof v !== "string"))}` : ""}`
      : describeType(value);
    throw new Problem(`must be ${want}, got ${got}`);
  }
  if ((r.type === "string" || r.type === "strings") && typeof value === "string" && value.trim() === "")
    throw new Problem("must not be empty");
  if (r.type === "strings" && Array.isArray(value) && value.length === 0)
    throw new Problem("must not be an empty array");
  return typeof value === "bigint" ? Number(value) : value;
}

/** Runs a rule's check; a CliError from it (a path's) already names the file and key. */
export function checked(r: Rule<KeyType>, value: unknown, c: RuleContext): unknown {
  return r.check === undefined ? value : (r.check as (v: unknown, c: RuleContext) => unknown)(value, c);
}
