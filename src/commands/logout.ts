import { record, say, verbose, warn, type Context } from "../context.ts";
import { ExitCode } from "../errors.ts";
import { removeNetrcEntries } from "../netrc/file.ts";
import { describeEntries, openSession } from "../session.ts";
import { removeState, withStateLock } from "../store/write.ts";
import { provider } from "../tokens.ts";

/**
 * Revokes the refresh token, then removes our netrc entry and the token state. Local clean-up
 * happens even when the provider cannot be reached: afterwards no token is left on disk.
 */
export async function logout(ctx: Context): Promise<number> {
  const s = await openSession(ctx);
  const log = verbose(ctx);
  return withStateLock(s.store, async () => {
    const state = s.store.read();
    let exitCode: number = ExitCode.ok;
    let revoked = false;
    // Only a user sign-in has a refresh token to revoke (service accounts never store one; their
    // JWT access tokens cannot be revoked).
    if (state?.refresh_token !== undefined) {
      try {
        const how = await provider(ctx, s, state).revoke(state.refresh_token);
        revoked = true;
        log(how === "revoked" ? "refresh token revoked (RFC 7009)" : "session ended at the logout endpoint");
      } catch (e) {
        warn(
          ctx,
          `could not revoke the session: ${(e as Error).message}; the local tokens are removed anyway`,
        );
        exitCode = ExitCode.failure;
      }
    }
    const removedEntries = await removeNetrcEntries(s.config.netrcPath, s.config.machines);
    const removedState = await removeState(s.store);
    const removedEntry = removedEntries.length > 0;
    record(ctx, {
      action: removedEntry || removedState ? "signed_out" : "none",
      config_path: s.config.path,
      issuer: s.config.issuer,
      client_id: s.config.clientId,
      host: s.config.machines[0],
      hosts: s.config.machines,
      netrc_path: s.config.netrcPath,
      revoked,
      removed_netrc_entry: removedEntry,
      removed_netrc_entries: removedEntries,
      removed_state: removedState,
    });
    if (!removedEntry && !removedState) {
      say(ctx, `Not signed in to ${s.config.issuer}; nothing to remove.`);
    } else {
      say(
        ctx,
        `Signed out of ${s.config.issuer}${removedEntries.length > 0 ? `; removed the ${describeEntries(removedEntries)} from ${s.config.netrcPath}` : ""}.`,
      );
    }
    return exitCode;
  });
}
