/**
 * A token endpoint's answer as the rest of the tool sees it: the tokens, when they expire (stated,
 * read from the JWT, or assumed), and who signed in.
 */
import type * as OidcClient from "openid-client";
import { printable } from "../text.ts";

export interface TokenSet {
  accessToken: string;
  refreshToken: string | undefined;
  /**
   * Absolute times. For the access token: expires_in, else the JWT's `exp`, else (accessExpiryAssumed)
   * default_token_lifetime from now; a lifetime too large for a Date is capped at year 9999.
   */
  accessExpiresAt: Date | null;
  refreshExpiresAt: Date | null | undefined;
  /** True when accessExpiresAt is config.defaultTokenLifetime from now: the provider said nothing. */
  accessExpiryAssumed: boolean;
  /** For display: control characters removed. */
  username: string | undefined;
  /** The ID token's `sub`, when there is one. */
  subject: string | undefined;
}

export type TokenResponse = OidcClient.TokenEndpointResponse & OidcClient.TokenEndpointResponseHelpers;

/**
 * The token set of an answer received at `nowMs`; `defaultLifetime` (seconds) is assumed for an
 * access token whose lifetime the provider does not state.
 */
export function tokenSet(res: TokenResponse, nowMs: number, defaultLifetime: number): TokenSet {
  const expiresIn = res.expiresIn();
  const stated = expiresIn !== undefined ? expiryAfter(nowMs, expiresIn) : jwtExpiry(res.access_token);
  // An opaque token without expires_in: unknown, taken as fresh for a while (and `status` says
  // so), or every timer run would fetch a new one.
  const accessExpiresAt = stated ?? expiryAfter(nowMs, defaultLifetime);
  let refreshExpiresAt: Date | null | undefined;
  if (res.refresh_token !== undefined) {
    // Keycloak: refresh_expires_in (0 means an offline token without expiry); else the JWT's exp.
    const kc = (res as Record<string, unknown>).refresh_expires_in;
    refreshExpiresAt =
      typeof kc === "number" && kc > 0 ? expiryAfter(nowMs, kc) : jwtExpiry(res.refresh_token);
  }
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

/** The `exp` of a JWT, without verifying it (only used for display and scheduling). */
export function jwtExpiry(token: string | undefined): Date | null {
  if (token === undefined) return null;
  const part = token.split(".")[1];
  if (part === undefined || token.split(".").length !== 3) return null;
  try {
    const payload = JSON.parse(Buffer.from(part, "base64url").toString("utf8")) as { exp?: unknown };
    const exp = payload.exp;
    if (typeof exp !== "number" || !Number.isFinite(exp)) return null;
    return new Date(Math.max(0, Math.min(exp * 1000, LATEST_EXPIRY_MS)));
  } catch {
    return null;
  }
}
