/**
 * The token endpoint's answer as ./provider.ts reads it before openid-client does: a 200 must be a
 * JSON object with an access token (one clear line otherwise), and its `Date` header or its access
 * token's `iat` tells the provider's clock.
 */
import type * as OidcClient from "openid-client";
import { CliError } from "../errors.ts";
import { numericDateMs } from "./jwt-claims.ts";
import { LATEST_EXPIRY_MS } from "./token-set.ts";

/** A token endpoint answer as read, before openid-client's checks (see replayOnProviderClock). */
export interface TokenAnswer {
  text: string;
  status: number;
  headers: Headers;
  url: string;
  /** Provider minus local time (ms) it showed. */
  offsetMs: number | undefined;
}

/** The answer's JSON object; one line naming the endpoint when it is none, or has no access token. */
export function tokenAnswerBody(
  text: string,
  url: string,
  what: string,
): Record<string, unknown> & { access_token: string } {
  const where = `${new URL(url).origin}${new URL(url).pathname}`;
  const malformed = (problem: string) =>
    new CliError(
      "token_answer_malformed",
      `the token endpoint ${where} answered the ${what} with ${problem}`,
      {
        hint: "the provider (or a proxy in front of it) sent something other than a token response: check issuer in the configuration and any HTTPS_PROXY, and try again; --verbose shows the requests",
      },
    );
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw malformed(text.trim() === "" ? "an empty body" : "a body that is not JSON (garbage, or cut off)");
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw malformed("JSON that is not an object");
  }
  const answer = body as Record<string, unknown>;
  if (typeof answer.access_token !== "string" || answer.access_token === "") {
    throw malformed("no access_token in it");
  }
  return answer as Record<string, unknown> & { access_token: string };
}

/**
 * An offset as measured: `Date` and `iat` have whole seconds and the answer took its time, so a
 * couple of seconds either way is no skew, and the clocks are taken to agree.
 */
function measured(offsetMs: number): number {
  return Math.abs(offsetMs) < 2000 ? 0 : offsetMs;
}

/** The earliest provider time we believe: no provider answering today runs a clock before 2000. */
const EARLIEST_PROVIDER_TIME_MS = Date.UTC(2000, 0, 1);

/**
 * Whether `ms` can be a provider's time: a finite instant from 2000 to the latest expiry we keep (year 9999). Anything else (an
 * `iat` of 1e13 seconds, a `Date:` in year 275760, beyond what a Date can hold) is no clock
 * reading at all, as if the provider had sent none: taken as one it made "NaN" of every span.
 */
export function plausibleProviderTime(ms: number): boolean {
  return Number.isFinite(ms) && ms >= EARLIEST_PROVIDER_TIME_MS && ms <= LATEST_EXPIRY_MS;
}

/**
 * Provider minus local time from an HTTP `Date` (whole seconds, cut off: its time lies in the next
 * second); undefined when it is not a plausible time.
 */
export function offsetFromDate(dateMs: number, now: Date): number | undefined {
  return plausibleProviderTime(dateMs) ? measured(dateMs + 500 - now.getTime()) : undefined;
}

/** Provider minus local time from an access token's plausible `iat`, when it is a JWT that has one. */
export function offsetFromIat(accessToken: string | undefined, receivedAt: Date): number | undefined {
  const iat = numericDateMs(accessToken, "iat");
  return iat === undefined || !plausibleProviderTime(iat)
    ? undefined
    : measured(iat + 500 - receivedAt.getTime());
}

/** A fresh Response with an answer's bytes (a body can be read once). */
export function answerCopy(a: TokenAnswer): Response {
  const copy = new Response(a.text, { status: a.status, headers: a.headers });
  Object.defineProperty(copy, "url", { value: a.url });
  return copy;
}

/** Whether two URLs name the same endpoint (query aside). */
export function sameEndpoint(a: string, b: string): boolean {
  try {
    const x = new URL(a);
    const y = new URL(b);
    return x.origin === y.origin && x.pathname === y.pathname;
  } catch {
    return false;
  }
}

/**
 * The offset (s) to check a refused answer again with: when openid-client refused it for its ID
 * token's timestamps and the answer itself showed a provider clock more than 30 s from the one the
 * check used. Undefined: the refusal stands.
 */
export function replayOffset(
  e: unknown,
  answer: TokenAnswer | undefined,
  usedSkewSec: number,
): number | undefined {
  const timestamps = [e, (e as { cause?: unknown } | undefined)?.cause].some(
    (x) => (x as { code?: unknown } | undefined)?.code === "OAUTH_JWT_TIMESTAMP_CHECK_FAILED",
  );
  if (!timestamps || answer?.offsetMs === undefined) return undefined;
  const skew = Math.round(answer.offsetMs / 1000);
  return Math.abs(skew - usedSkewSec) <= 30 ? undefined : skew;
}

/**
 * Makes `c` check `answer` again: its fetch hands back the answer already read for the token
 * endpoint (a grant is never sent twice) and its key set is the one `live` already fetched.
 */
export function replayFrom(
  l: typeof OidcClient,
  c: OidcClient.Configuration,
  live: OidcClient.Configuration,
  answer: TokenAnswer,
  tokenEndpoint: string,
): void {
  const fetch = c[l.customFetch] as (url: string, init: RequestInit) => Promise<Response>;
  c[l.customFetch] = ((url: string, init: RequestInit) =>
    (init.method ?? "GET").toUpperCase() === "POST" && sameEndpoint(url, tokenEndpoint)
      ? Promise.resolve(answerCopy(answer))
      : fetch(url, init)) as OidcClient.CustomFetch;
  const keys = l.getJwksCache(live);
  if (keys !== undefined) l.setJwksCache(c, keys);
}
