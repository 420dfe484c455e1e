/**
 * The end-to-end check: ask the cache for `/nix-cache-info` with the credentials curl would take
 * from the netrc (HTTP Basic, as Nix sends them). Proxies and extra CAs work as for every other
 * request of the tool (makeFetch).
 */
import type { CacheHost, Config } from "../config/load.ts";
import { verbose, type Context } from "../context.ts";
import type { NetrcEntry } from "../netrc/netrc.ts";
import { CliError } from "../errors.ts";
import { describeNetworkError, makeFetch } from "../net/http.ts";
import { check, type Check } from "./report.ts";

/** The parameters of a `Bearer` / `Basic` challenge: `error`, `error_description`, `realm`. */
export function parseChallenge(header: string | null): Record<string, string> {
  const out: Record<string, string> = {};
  if (header === null) return out;
  for (const m of header.matchAll(/([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))/g)) {
    const key = (m[1] as string).toLowerCase();
    out[key] ??= m[2] !== undefined ? m[2].replace(/\\(.)/g, "$1") : (m[3] as string);
  }
  return out;
}

function reasonOf(header: string | null): string | undefined {
  const c = parseChallenge(header);
  const parts = [c.error, c.error_description].filter((x): x is string => x !== undefined && x !== "");
  return parts.length === 0 ? undefined : parts.join(": ");
}

export async function cacheCheck(
  ctx: Context,
  config: Config,
  cache: CacheHost,
  entry: NetrcEntry | undefined,
  tokenExpired: boolean,
  renew: string,
): Promise<Check> {
  const title = "cache";
  const url = `${cache.url}/nix-cache-info`;
  const host = new URL(cache.url).host;
  const headers: Record<string, string> = {};
  const credentials = entry?.password !== undefined && entry.password !== "";
  if (credentials) {
    headers.authorization = `Basic ${Buffer.from(`${entry.login ?? ""}:${entry.password}`, "latin1").toString("base64")}`;
  }
  const how = credentials
    ? entry.kind === "default"
      ? "with the netrc's `default` credentials"
      : `with the netrc entry for ${cache.machine}`
    : "without credentials (no netrc entry)";
  const fetch = makeFetch(ctx.env, verbose(ctx), ctx.onSlowRequest);
  const signal = AbortSignal.any([ctx.signal, AbortSignal.timeout(config.timeoutSeconds * 1000)]);
  const started = performance.now();
  let response: Response;
  let body: string;
  try {
    response = await fetch(url, { method: "GET", headers, signal, redirect: "follow" });
    body = await response.text();
  } catch (e) {
    if (ctx.signal.aborted) throw e;
    if (e instanceof CliError) {
      return check("cache", title, "problem", e.message, {
        fix: [`check cache_host / cache_url in ${config.path}: it must be the binary cache's base URL`],
      });
    }
    const cause = (e as { cause?: { message?: unknown } }).cause?.message;
    const reason = describeNetworkError(e) ?? (typeof cause === "string" ? cause : (e as Error).message);
    return check("cache", title, "problem", `cannot reach the cache at ${host}: ${reason}`, {
      fix: [`check cache_host / cache_url in ${config.path}, the network and any HTTPS_PROXY`],
    });
  }
  const ms = Math.round(performance.now() - started);
  const line = `GET ${url} ${how} -> ${response.status} (${ms} ms)`;
  if (response.status === 200) {
    if (!/^StoreDir:/m.test(body)) {
      return check(
        "cache",
        title,
        "problem",
        `${line}, but the answer is not a nix-cache-info (a login page?)`,
        {
          fix: [`check cache_url in ${config.path}: it must be the binary cache's base URL`],
        },
      );
    }
    return check("cache", title, "ok", line, {
      details: credentials
        ? []
        : ["the cache answered without credentials: it does not seem to be protected"],
    });
  }
  if (response.status === 401) {
    const reason = reasonOf(response.headers.get("www-authenticate"));
    const summary = credentials
      ? `the cache rejected the token${reason !== undefined ? ` (${reason})` : ""}`
      : `the cache wants credentials and the netrc has none for ${cache.machine}`;
    const fix =
      credentials && !tokenExpired && entry.kind === "machine"
        ? [
            `run \`${renew}\`; if it still fails, the cache does not accept tokens from this issuer/client`,
            "(check issuer and client_id with the cache's administrators: audience, roles)",
          ]
        : [`run \`${renew}\``];
    return check("cache", title, "problem", summary, { details: [line], fix });
  }
  if (response.status === 403) {
    if (!credentials || tokenExpired) {
      return check(
        "cache",
        title,
        "problem",
        `the cache answers 403 to ${credentials ? "an expired token" : "a request without a token"}; it should answer 401`,
        { details: [line, NIX_403], fix: [`run \`${renew}\``, CACHE_401_FIX] },
      );
    }
    return check("cache", title, "problem", "the cache accepted the token but refused access (403)", {
      details: [line],
      fix: ["ask the cache's administrators for access (a role or group your token lacks)"],
    });
  }
  if (response.status === 404) {
    return check("cache", title, "problem", `no nix-cache-info at ${url} (404)`, {
      details: [line],
      fix: [`set cache_url in ${config.path} to the binary cache's base URL`],
    });
  }
  return check("cache", title, "problem", `the cache answered HTTP ${response.status}`, {
    details: [line],
    fix: ["try again later, or ask the cache's administrators"],
  });
}

/**
 * NixOS/nix http-binary-cache-store.cc: a 403 on a .narinfo counts as "not in this cache" and is
 * remembered for narinfo-cache-negative-ttl (3600 s by default), after which Nix builds from source
 * even once the token is renewed; a 401 only disables the cache for 60 s.
 */
const NIX_403 =
  'Nix takes 403 as "not in this cache", remembers it for narinfo-cache-negative-ttl (an hour by default) and builds from source meanwhile; 401 only disables the cache for a minute';
const CACHE_401_FIX =
  "ask the cache's administrators to answer 401 when the token is missing, expired or invalid (see docs/cache-setup.md)";

/** A store path hash that names nothing: the cache has no such narinfo. */
const ABSENT_NARINFO = "00000000000000000000000000000000.narinfo";

/**
 * How the cache answers a request without a token, as Nix sends one after the token expired or
 * before the first sign-in: 401 is right; 403 makes Nix stop asking for an hour.
 */
export async function cacheUnauthenticatedCheck(
  ctx: Context,
  config: Config,
  cache: CacheHost,
): Promise<Check> {
  const title = "cache without a token";
  const url = `${cache.url}/${ABSENT_NARINFO}`;
  const fetch = makeFetch(ctx.env, verbose(ctx), ctx.onSlowRequest);
  const signal = AbortSignal.any([ctx.signal, AbortSignal.timeout(config.timeoutSeconds * 1000)]);
  let status: number;
  try {
    const response = await fetch(url, { method: "GET", signal, redirect: "manual" });
    await response.body?.cancel();
    status = response.status;
  } catch (e) {
    if (ctx.signal.aborted) throw e;
    if (e instanceof CliError) return check("cache_unauthenticated", title, "problem", e.message);
    return check(
      "cache_unauthenticated",
      title,
      "skipped",
      `cannot reach the cache: ${describeNetworkError(e, url) ?? (e as Error).message}`,
    );
  }
  const line = `GET ${url} without credentials -> ${status}`;
  if (status === 401) {
    return check(
      "cache_unauthenticated",
      title,
      "ok",
      `answers 401 to a request without a token, as Nix needs`,
      {
        details: [line],
      },
    );
  }
  if (status === 403) {
    return check(
      "cache_unauthenticated",
      title,
      "problem",
      "the cache answers 403 to a request without a token; it should answer 401",
      { details: [line, NIX_403], fix: [CACHE_401_FIX] },
    );
  }
  if (status === 404) {
    return check(
      "cache_unauthenticated",
      title,
      "note",
      "the cache answers narinfo requests without a token: it does not seem to be protected",
      {
        details: [line],
      },
    );
  }
  if (status >= 300 && status < 400) {
    return check(
      "cache_unauthenticated",
      title,
      "problem",
      `the cache redirects a request without a token (HTTP ${status}, a login page?); Nix cannot follow that: it should answer 401`,
      { details: [line], fix: [CACHE_401_FIX] },
    );
  }
  return check(
    "cache_unauthenticated",
    title,
    "note",
    `the cache answers HTTP ${status} to a request without a token`,
    {
      details: [line],
    },
  );
}
