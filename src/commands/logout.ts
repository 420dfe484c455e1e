import { realpath } from "node:fs/promises";
import { removeStaleTempFiles } from "../fs/atomic-file.ts";
import { record, say, verbose, warn, type Context } from "../context.ts";
import { ExitCode } from "../errors.ts";
import { removeNetrcEntries } from "../netrc/file.ts";
import { describeEntries, loadSetup, lockOptions, netrcWhere } from "../core/setup.ts";
import { CorruptStateError, hasRefreshToken, type TokenState } from "../store/state.ts";
import { removeCorruptCopies, removeState, withStateLock } from "../store/write.ts";
import { provider } from "../core/save-tokens.ts";

/**
 * Revokes the refresh token, then removes our netrc entry, the token state, the copies of a corrupt
 * one and any temp file a killed process left with a token in it. Local clean-up happens whatever the provider or the
 * state file say (a corrupt state is removed too): afterwards no token of ours is left on disk.
 */
export function logout(ctx: Context): Promise<number> {
  const s = loadSetup(ctx);
  const log = verbose(ctx);
  return withStateLock(
    s.store,
    async () => {
      let state: TokenState | undefined;
      try {
        state = s.store.read();
      } catch (e) {
        // Nothing in it can be used; it is removed with the rest below (logout keeps no copy).
        if (!(e instanceof CorruptStateError)) throw e;
        warn(ctx, `${s.store.file}: token state is corrupt; removing it with the local tokens`);
      }
      let exitCode: number = ExitCode.ok;
      let revoked = false;
      // Only a user sign-in has a refresh token to revoke (service accounts never store one; their
      // JWT access tokens cannot be revoked).
      if (state !== undefined && hasRefreshToken(state) && state.session_ended === undefined) {
        try {
          // A locked keychain: the session cannot be revoked, but the local copies still go.
          const { refresh_token: refreshToken } = await s.vault.load(state);
          const how = await provider(ctx, s, state).revoke(refreshToken as string);
          revoked = true;
          log(
            how === "revoked" ? "refresh token revoked (RFC 7009)" : "session ended at the logout endpoint",
          );
        } catch (e) {
          warn(
            ctx,
            `could not revoke the session: ${(e as Error).message}; the local tokens are removed anyway`,
          );
          exitCode = ExitCode.failure;
        }
      }
      let netrcError: unknown;
      let removedEntries: string[] = [];
      try {
        removedEntries = await removeNetrcEntries(
          s.config.netrcPath,
          s.config.machines,
          netrcWhere(s.config),
        );
      } catch (e) {
        netrcError = e;
      }
      let keychainError: unknown;
      const removedItem = await s.vault.forget(state).catch((e: unknown) => {
        keychainError = e;
        return false;
      });
      if (removedItem) log("removed the refresh token from the keychain");
      // An item that could not be removed keeps the state that names it: `logout` again, once the
      // keyring is unlocked, finds both.
      const removedState = keychainError === undefined ? await removeState(s.store) : false;
      // Copies of a corrupt state set aside earlier may hold a refresh token too.
      for (const f of await removeCorruptCopies(s.store, 0)) log(`removed ${f}`);
      const stale = [
        ...(await removeStaleTempFiles(s.store.file)),
        ...(await removeStaleTempFiles(await realpath(s.config.netrcPath).catch(() => s.config.netrcPath))),
      ];
      for (const f of stale) log(`removed ${f}, left by a process that was killed`);
      if (netrcError !== undefined) throw netrcError;
      if (keychainError !== undefined) throw keychainError;
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
        removed_keychain_item: removedItem,
      });
      if (!removedEntry && !removedState && !removedItem) {
        say(ctx, `Not signed in to ${s.config.issuer}; nothing to remove.`);
      } else {
        say(
          ctx,
          `Signed out of ${s.config.issuer}${removedEntry ? `; removed the ${describeEntries(removedEntries)} from ${s.config.netrcPath}` : ""}.`,
        );
      }
      return exitCode;
    },
    lockOptions(ctx, s.config),
  );
}
