import { isLoopbackHost } from "../os/loopback-host.ts";
import type { Env } from "../os/env.ts";
import { CliError } from "../errors.ts";
import { boundedResponse } from "./answer-cap.ts";
import { requestFetch } from "./request.ts";

export type Logger = (message: string) => void;

export type FetchLike = (url: string, init: RequestInit) => Promise<Response>;

const PROXY_VARS = ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"];

export function proxyConfigured(env: Env): boolean {
  return PROXY_VARS.some((v) => (env[v] ?? "") !== "");
}

/**
 * The fetch every protocol request goes through: it honours proxy variables and logs method, URL
 * without query, status and time for --verbose. Bodies and headers are never logged: they carry
 * secrets. Without a proxy, requests that do not follow redirects (all of openid-client's) go
 * through ./request.ts, which starts much faster than Node's fetch; the others through fetch.
 * Every answer's body is read whole here, at most MAX_ANSWER_BYTES (./answer-cap.ts) of it.
 */
export function makeFetch(
  env: Env,
  log: Logger,
  onSlowRequest?: ((host: string) => void) | undefined,
): FetchLike {
  let proxy: Promise<FetchLike> | undefined;
  const resolveBase = (init: RequestInit): Promise<FetchLike> => {
    if (proxyConfigured(env)) {
      proxy ??= import("./proxy.ts").then((m: { proxyFetch: FetchLike }) => m.proxyFetch);
      return proxy;
    }
    return Promise.resolve(init.redirect === "follow" ? (globalThis.fetch as FetchLike) : requestFetch);
  };
  return async (url, init) => {
    const u = new URL(url);
    const shown = `${init.method ?? "GET"} ${u.origin}${u.pathname}`;
    const started = performance.now();
    const slow = onSlowRequest === undefined ? undefined : setTimeout(() => onSlowRequest(u.host), 1000);
    slow?.unref();
    try {
      const base = await resolveBase(init);
      let response = await base(url, init);
      log(`${shown} -> ${response.status} (${Math.round(performance.now() - started)} ms)`);
      // requestFetch stops reading at the cap itself; fetch's body is a stream, read here.
      if (base !== requestFetch) response = await boundedResponse(response, init.method ?? "GET", u);
      return response;
    } catch (e) {
      log(
        `${shown} -> failed (${Math.round(performance.now() - started)} ms): ${describeNetworkError(e, url) ?? String(e)}`,
      );
      // Remembered for the message: the request may have been for another host than the issuer's.
      if (typeof e === "object" && e !== null && !(REQUEST_URL in e)) {
        Object.defineProperty(e, REQUEST_URL, { value: url });
      }
      throw e;
    } finally {
      clearTimeout(slow);
    }
  };
}

const REQUEST_URL = Symbol("requestUrl");

/** The URL a failed request was for, when it went through makeFetch. */
export function requestUrlOf(e: unknown): string | undefined {
  for (let cur: unknown = e, depth = 0; cur !== undefined && cur !== null && depth < 6; depth++) {
    if (typeof cur !== "object") return undefined;
    const url = (cur as Record<symbol, unknown>)[REQUEST_URL];
    if (typeof url === "string") return url;
    cur = (cur as { cause?: unknown }).cause;
  }
  return undefined;
}

const NETWORK_CODES: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ENOTFOUND: "host not found (DNS)",
  EAI_AGAIN: "DNS lookup failed",
  ETIMEDOUT: "connection timed out",
  ECONNRESET: "connection reset",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
  UND_ERR_CONNECT_TIMEOUT: "connection timed out",
  UND_ERR_SOCKET: "connection closed",
  CERT_HAS_EXPIRED: "TLS certificate has expired",
  DEPTH_ZERO_SELF_SIGNED_CERT: "TLS certificate is self-signed (set NODE_EXTRA_CA_CERTS)",
  SELF_SIGNED_CERT_IN_CHAIN: "TLS certificate chain is not trusted (set NODE_EXTRA_CA_CERTS)",
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: "TLS certificate is not trusted (set NODE_EXTRA_CA_CERTS)",
  ERR_TLS_CERT_ALTNAME_INVALID: "TLS certificate does not match the host name",
  CERT_NOT_YET_VALID: "TLS certificate is not yet valid (check the system clock)",
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: "TLS certificate's issuer is not trusted (set NODE_EXTRA_CA_CERTS)",
  UNABLE_TO_GET_ISSUER_CERT: "TLS certificate's issuer is not trusted (set NODE_EXTRA_CA_CERTS)",
  CERT_UNTRUSTED: "TLS certificate is not trusted (set NODE_EXTRA_CA_CERTS)",
  CERT_REVOKED: "TLS certificate has been revoked",
  // OpenSSL reading an HTTP answer as a TLS record: an https:// URL for a plain-http port.
  ERR_SSL_WRONG_VERSION_NUMBER:
    "the server does not speak TLS on this port (a plain http server? check the scheme and port)",
  ERR_SSL_PACKET_LENGTH_TOO_LONG:
    "the server does not speak TLS on this port (a plain http server? check the scheme and port)",
};

/**
 * Ports the Fetch standard's "bad port" list blocks (Node's fetch refuses them with only
 * "bad port"): browsers and Node will never connect there, whatever serves them.
 */
function badPort(port: string | undefined): string {
  return `port${port === undefined || port === "" ? "" : ` ${port}`} is one Node's fetch refuses to connect to (a "bad port" of the Fetch standard, like 9, 25 or 6000): serve it on another port`;
}

/**
 * A short reason for a failure below HTTP (connection, DNS, TLS, timeout), or undefined. `url`,
 * when known, names the port Node refused.
 */
export function describeNetworkError(e: unknown, url?: string): string | undefined {
  for (let cur: unknown = e, depth = 0; cur !== undefined && cur !== null && depth < 6; depth++) {
    const err = cur as {
      name?: string;
      code?: string;
      message?: unknown;
      cause?: unknown;
      errors?: unknown[];
    };
    // undici ends the request with an AbortError when the proxy will not open the tunnel: no timeout.
    const tunnel =
      err.code === "UND_ERR_ABORTED" && typeof err.message === "string"
        ? /^Proxy response \((\d{3})\) !== 200 when HTTP Tunneling/.exec(err.message)
        : null;
    if (tunnel !== null) return `the proxy answered HTTP ${tunnel[1]} instead of opening a tunnel`;
    if (err.name === "TimeoutError" || err.name === "AbortError") return "timed out";
    if (typeof err.code === "string" && err.code in NETWORK_CODES) return NETWORK_CODES[err.code];
    if (err.message === "bad port") return badPort(url === undefined ? undefined : portOf(url));
    // node:https reports OpenSSL's reading of a plain-http answer as EPROTO with its reason text.
    if (
      err.code === "EPROTO" &&
      typeof err.message === "string" &&
      /wrong version number|packet length too long/i.test(err.message)
    ) {
      return NETWORK_CODES.ERR_SSL_WRONG_VERSION_NUMBER;
    }
    if (typeof err.code === "string" && /^(ERR_SSL_|ERR_TLS_|EPROTO$)/.test(err.code)) {
      return `TLS handshake failed (${err.code})`;
    }
    if (Array.isArray(err.errors) && err.errors.length > 0) {
      const inner = describeNetworkError(err.errors[0], url);
      if (inner !== undefined) return inner;
    }
    cur = err.cause;
  }
  return undefined;
}

/**
 * The reason (as describeNetworkError) and the one hint that fits it: a certificate this machine
 * does not trust needs its CA, not a look at the network; a time check needs the clock.
 */
export function networkProblem(e: unknown, url?: string): { reason: string; hint: string } | undefined {
  const reason = describeNetworkError(e, url);
  if (reason === undefined) return undefined;
  const ca = " (set NODE_EXTRA_CA_CERTS)";
  if (reason.endsWith(ca)) {
    return {
      reason: reason.slice(0, -ca.length),
      hint: "set NODE_EXTRA_CA_CERTS to the PEM file of the CA that signed the provider's certificate (e.g. NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt for the system's CAs)",
    };
  }
  if (reason.includes("(check the system clock)")) {
    return { reason, hint: "check the system clock (and that the provider's certificate is current)" };
  }
  if (reason.includes("does not match the host name")) {
    return { reason, hint: "check the host in the issuer URL: it must be a name the certificate is for" };
  }
  if (reason.startsWith("the proxy answered HTTP 407 ")) {
    return {
      reason,
      hint: "the proxy asks who you are: give its user and password in HTTPS_PROXY (http://USER:PASSWORD@HOST:PORT)",
    };
  }
  if (reason.startsWith("the proxy ")) {
    return {
      reason,
      hint: "check HTTPS_PROXY and NO_PROXY: the proxy must allow CONNECT to the issuer's host",
    };
  }
  if (reason.startsWith("the server does not speak TLS") || reason.startsWith("port")) {
    return { reason, hint: "check the scheme and port of the issuer URL in the configuration" };
  }
  return { reason, hint: "check the network and the issuer URL in the configuration" };
}

function portOf(url: string): string | undefined {
  try {
    const u = new URL(url);
    return u.port !== "" ? u.port : u.protocol === "https:" ? "443" : "80";
  } catch {
    return undefined;
  }
}

/**
 * Failures before a single byte of the request can have been sent: no connection (refused, DNS,
 * connect timeout) or a TLS handshake that did not complete (certificate checks happen in it).
 */
const NEVER_SENT = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "UND_ERR_CONNECT_TIMEOUT",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

/** True when the request cannot have reached the server, so retrying cannot replay a grant. */
export function neverReachedServer(e: unknown): boolean {
  for (let cur: unknown = e, depth = 0; cur !== undefined && cur !== null && depth < 6; depth++) {
    const code = (cur as { code?: string }).code;
    if (typeof code === "string" && (NEVER_SENT.has(code) || code.startsWith("ERR_SSL_"))) return true;
    const errors = (cur as { errors?: unknown[] }).errors;
    if (Array.isArray(errors) && errors.length > 0 && errors.every(neverReachedServer)) return true;
    cur = (cur as { cause?: unknown }).cause;
  }
  return false;
}

/** The longest endpoint address we accept from a provider (browsers take about 2,000). */
const MAX_ENDPOINT_LENGTH = 2048;

/**
 * An endpoint a provider named: https, or http on a loopback host when the issuer is loopback too.
 * For the requests we make ourselves (logout, the signing keys ahead of time) and, through
 * checkEndpoints (../oidc/discovery.ts), for every endpoint of the discovery document
 * before openid-client is allowed plain http for a loopback issuer (it would allow it to any host). The request must also not follow redirects (`redirect: "manual"`):
 * a 307 would re-send the body, refresh token included, wherever the provider points.
 */
export function checkedEndpoint(raw: unknown, issuer: string, what: string): URL {
  // An address is printed (the device verification URI, as text and as a QR code) and sent to: a
  // provider's megabyte of it would fill the terminal and overflow the QR code.
  if (String(raw).length > MAX_ENDPOINT_LENGTH) {
    throw new CliError(
      "provider_endpoint_too_long",
      `${new URL(issuer).host} advertises a ${what} longer than ${MAX_ENDPOINT_LENGTH} characters; nothing was sent there`,
      { hint: "check the provider's discovery document and device authorization answer" },
    );
  }
  let url: URL;
  try {
    url = new URL(String(raw));
  } catch {
    throw new CliError(
      "provider_endpoint_not_url",
      `${new URL(issuer).host} advertises a ${what} that is not a URL`,
    );
  }
  const loopbackIssuer = new URL(issuer).protocol === "http:";
  if (
    url.protocol === "https:" ||
    (url.protocol === "http:" && loopbackIssuer && isLoopbackHost(url.hostname))
  ) {
    return url;
  }
  throw new CliError(
    "provider_endpoint_not_https",
    `${new URL(issuer).host} advertises a ${what} at ${url.protocol}//${url.host}, which is not https; nothing was sent there`,
    {
      hint: "plain http only between a loopback issuer and loopback endpoints; check the provider's discovery document",
    },
  );
}
