/**
 * What the stored refresh token means, in the words `login`, `refresh`, `status` and `doctor` share:
 * none at all (the provider issues none to this client), an offline token, or an ordinary one.
 */
import type { Config } from "../config/load.ts";
import { describeExpiry } from "../duration.ts";
import { hasRefreshToken, type TokenState } from "../store/state.ts";

/**
 * Keycloak's offline tokens (scope offline_access) come with `refresh_expires_in: 0` and, unless
 * the realm limits them ("Offline Session Max Limited"), no `exp`: they last until revoked or
 * unused for the realm's Offline Session Idle (30 days by default). Keycloak issues 8919, 27201.
 */
export const OFFLINE_REFRESH_TOKEN =
  "offline (no expiry; ends when revoked or idle past the realm's offline idle time)";

/**
 * A user sign-in that left an access token but no refresh token: the provider gives this client
 * none (Keycloak with the client's "Use refresh tokens" off; Spring Authorization Server for
 * public clients), so only a new sign-in renews the token.
 */
export function noRefreshTokenIssued(config: Config, state: TokenState | undefined): boolean {
  return config.mode === "user" && state?.access_token !== undefined && !hasRefreshToken(state);
}

/** Why the token cannot be renewed without a browser. */
export function noRefreshTokenReason(config: Config): string {
  return `${new URL(config.issuer).host} issues no refresh token to client ${config.clientId}, so a browser sign-in is needed each time the access token expires`;
}

/** What the provider's administrator (or the configuration) can change to stay signed in. */
export function noRefreshTokenFix(config: Config): string {
  return `to stay signed in, enable refresh tokens for client ${config.clientId} at the provider (Keycloak: "Use refresh tokens" in the client's Advanced tab), or request offline_access where the provider grants it (scopes in ${config.path})`;
}

/** The refresh token line of `status`, `doctor` and `login` (the ended session is said elsewhere). */
export function describeRefreshToken(config: Config, state: TokenState, now: Date): string {
  if (!hasRefreshToken(state)) {
    return noRefreshTokenIssued(config, state)
      ? `none (${new URL(config.issuer).host} issues none to this client: sign in again when the access token expires)`
      : "none";
  }
  const at = state.refresh_token_expires_at ?? null;
  if (state.refresh_token_offline === true) {
    return at === null ? OFFLINE_REFRESH_TOKEN : `${describeExpiry(at, now)} (an offline token)`;
  }
  return describeExpiry(at, now);
}
