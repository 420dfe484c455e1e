/**
 * A token endpoint's answer as the rest of the tool sees it: the tokens, when they expire (stated,
 * read from the JWT, or assumed), and who signed in.
 */
import type * as OidcClient from "openid-client";
import { printable } from "../text.ts";
import { numericDateMs, unverifiedClaims } from "./jwt-claims.ts";

export interface TokenSet {
  accessToken: string;
  refreshToken: string | undefined;
  /**
   * Absolute times. For the access token: expires_in, else the JWT's `exp`, else (accessExpiryAssumed)
   * default_token_lifetime from now; a lifetime too large for a Date is capped at year 9999.
   */
  accessExpiresAt: Date | null;
  refreshExpiresAt: Date | null | undefined;
  /** An offline refresh token (Keycloak's `refresh_expires_in: 0`, or a refresh JWT whose `typ` is "Offline"). */
  refreshOffline: boolean;
  /** True when accessExpiresAt is config.defaultTokenLifetime from now: the provider said nothing. */
  accessExpiryAssumed: boolean;
  /** For display: control characters removed. */
  username: string | undefined;
  /** The ID token's `sub`, when there is one. */
  subject: string | undefined;
  /**
   * Provider minus local time in ms, measured from this answer (its `Date` header, else the access
   * token's `iat`), and the local time of the answer. The expiries above are on the provider's clock.
   */
  clockOffsetMs: number | undefined;
  receivedAt: Date;
}

/**
 * What a token response holds before any of openid-client's checks ran: handed to the caller of
 * Provider.refresh so that a rotated refresh token is saved first.
 */
export interface RotatedRefreshToken {
  refreshToken: string;
  refreshExpiresAt: Date | null;
  clockOffsetMs: number | undefined;
  receivedAt: Date;
}

export type TokenResponse = OidcClient.TokenEndpointResponse & OidcClient.TokenEndpointResponseHelpers;

/**
 * The token set of an answer received at `nowMs` (the provider's time); `defaultLifetime`
 * (seconds) is assumed for an access token whose lifetime the provider does not state.
 */
export function tokenSet(
  res: TokenResponse,
  nowMs: number,
  defaultLifetime: number,
): Omit<TokenSet, "clockOffsetMs" | "receivedAt"> {
  const stated = statedExpiry(res.expires_in, nowMs) ?? jwtExpiry(res.access_token);
  // An opaque token without expires_in: unknown, taken as fresh for a while (and `status` says
  // so), or every timer run would fetch a new one.
  const accessExpiresAt = stated ?? expiryAfter(nowMs, defaultLifetime);
  const refreshExpiresAt =
    res.refresh_token === undefined ? undefined : refreshExpiry(res as Record<string, unknown>, nowMs);
  const refreshOffline = res.refresh_token !== undefined && refreshIsOffline(res as Record<string, unknown>);
  const claims = res.claims();
  const name =
    claims === undefined
      ? undefined
      : typeof claims.preferred_username === "string"
        ? claims.preferred_username
        : claims.sub;
  return {
    accessToken: res.access_token,
    refreshToken: res.refresh_token,
    accessExpiresAt,
    accessExpiryAssumed: stated === null,
    refreshExpiresAt,
    refreshOffline,
    username: name === undefined ? undefined : printable(name, 100),
    subject: claims?.sub,
  };
}

/** The latest time we keep: a Date and its ISO string stay valid and four-digit-yeared. */
export const LATEST_EXPIRY_MS = Date.UTC(9999, 11, 31, 23, 59, 59);

/**
 * `seconds` after `nowMs`, for a lifetime a provider stated: a huge one is capped at
 * LATEST_EXPIRY_MS (a Date beyond +-8.64e15 ms is invalid and toISOString throws), a value that
 * is not a finite positive number means "not stated" (null).
 */
export function expiryAfter(nowMs: number, seconds: number): Date | null {
  if (typeof seconds !== "number" || !Number.isFinite(seconds) || seconds <= 0) return null;
  return new Date(Math.min(nowMs + seconds * 1000, LATEST_EXPIRY_MS));
}

/**
 * The access token's expiry by its `expires_in` (RFC 6749 section 5.1: its lifetime in seconds
 * from the answer, on the provider's clock `nowMs`): 0 is a real answer, a token already expired
 * at issue time (not "not stated": that made it look fresh for default_token_lifetime). A huge
 * one is capped at LATEST_EXPIRY_MS. openid-client refuses an answer whose expires_in is negative
 * or not a number; anything but a finite number >= 0 that still gets here is taken as not stated
 * (null: the JWT's `exp`, else default_token_lifetime, decides).
 */
export function statedExpiry(expiresIn: unknown, nowMs: number): Date | null {
  if (typeof expiresIn !== "number" || !Number.isFinite(expiresIn) || expiresIn < 0) return null;
  return new Date(Math.min(nowMs + expiresIn * 1000, LATEST_EXPIRY_MS));
}

/** The `exp` of a JWT, without verifying it (only used for display and scheduling). */
export function jwtExpiry(token: string | undefined): Date | null {
  const exp = numericDateMs(token, "exp");
  return exp === undefined ? null : new Date(Math.max(0, Math.min(exp, LATEST_EXPIRY_MS)));
}

/**
 * When a token response's refresh token expires, on the provider's clock (`nowMs`): Keycloak's
 * refresh_expires_in (0 means an offline token without expiry), else the token's own `exp`.
 */
export function refreshExpiry(answer: Record<string, unknown>, nowMs: number): Date | null {
  const kc = answer.refresh_expires_in;
  if (typeof kc === "number" && kc > 0) return expiryAfter(nowMs, kc);
  return jwtExpiry(typeof answer.refresh_token === "string" ? answer.refresh_token : undefined);
}

/**
 * Whether a token response's refresh token is an offline token: Keycloak says so with
 * `refresh_expires_in: 0` (Keycloak issues 8919, 27201), and in the refresh JWT's `typ` ("Offline").
 */
export function refreshIsOffline(answer: Record<string, unknown>): boolean {
  if (answer.refresh_expires_in === 0) return true;
  const token = typeof answer.refresh_token === "string" ? answer.refresh_token : undefined;
  return unverifiedClaims(token)?.typ === "Offline";
}
