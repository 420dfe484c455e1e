/**
 * The renewal after ./renewal.ts found one is needed: under the state lock, a refresh token grant
 * (user sign-in) or a client credentials grant (service account), then the files.
 */
import { verbose, type Context } from "../context.ts";
import { loginRequired } from "../errors.ts";
import { recordTokens } from "../result.ts";
import { parseClientKey } from "../oidc/client-key.ts";
import { withStateLock } from "../store/write.ts";
import type { TokenState } from "../store/state.ts";
import type { PendingRenewal } from "./renewal.ts";
import { tokenGood } from "./renewal.ts";
import { provider, saveTokens } from "./save-tokens.ts";

/**
 * The whole read -> grant -> write runs under the state lock and re-reads the state after taking
 * it: Keycloak may end a session when a rotated refresh token is used twice, so two timers must
 * never both spend the same one. Returns the new state, or "renewed-meanwhile" when another
 * process did it.
 */
export function renew(ctx: Context, r: PendingRenewal): Promise<TokenState | "renewed-meanwhile"> {
  const { setup: s, credential, seen, minValid } = r;
  const mode = s.config.mode;
  // A bad key file is a configuration error, found before any request.
  if (credential !== undefined && "keyText" in credential) {
    parseClientKey(s.config, credential.keyText, credential.keyFile);
  }
  return withStateLock(s.store, async () => {
    const state = s.store.read();
    // Another process renewed after this one started (a timer and a user, or ten processes started
    // at once, some of which start slower): its token is as fresh as ours would be. The process's
    // own start is the reference, not our first read: a slow starter may read after the renewal.
    const renewedAt = state?.updated_at === undefined ? NaN : Date.parse(state.updated_at);
    const renewedMeanwhile =
      state?.access_token !== undefined &&
      (state.access_token !== seen?.access_token || renewedAt >= performance.timeOrigin);
    if (tokenGood(s, state, minValid ?? (renewedMeanwhile ? 1 : Infinity), ctx.now())) {
      verbose(ctx)("another nix-cache-login renewed the token meanwhile; nothing to do");
      recordTokens(ctx, s.config, state, "none");
      return "renewed-meanwhile" as const;
    }
    const p = provider(ctx, s, state, credential);
    let tokens;
    if (mode === "service-account") {
      tokens = await p.clientCredentials();
    } else {
      if (state?.refresh_token === undefined) {
        throw loginRequired(
          `not signed in to ${s.config.issuer} as client ${s.config.clientId}`,
          "not_signed_in",
        );
      }
      tokens = await p.refresh(state.refresh_token);
    }
    return saveTokens(ctx, s, state, tokens, p, mode);
  });
}
