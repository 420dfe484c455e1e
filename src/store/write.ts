import { chmod, rename, unlink } from "node:fs/promises";
import { ensureDir, removeCreatedDirs, withLock, writeFileAtomic } from "../atomic-file.ts";
import { fileError } from "../fs-errors.ts";
import type { LockOptions } from "../lock-file.ts";
import { CorruptStateError, type StateStore, type TokenState } from "./state.ts";

/** The setting that chose the state directory, for messages. */
export const STATE_WHERE = "the state directory ($XDG_STATE_HOME/nix-cache-login)";

/** Writes the state; `touch: false` keeps updated_at (it marks renewals, which others look at). */
export async function writeState(
  store: StateStore,
  state: TokenState,
  opts: { touch?: boolean } = {},
): Promise<void> {
  await ensureDir(store.dir, STATE_WHERE);
  const updated = opts.touch === false ? state : { ...state, updated_at: new Date().toISOString() };
  await writeFileAtomic(store.file, `${JSON.stringify(updated, null, 2)}\n`, "utf8", STATE_WHERE);
}

/**
 * Reads the state; a corrupt file is renamed aside (kept for a look, 0600) and reported through
 * `warn`, and the caller starts afresh. Call it under the state lock.
 */
export async function readStateOrSetAside(
  store: StateStore,
  warn: (line: string) => void,
): Promise<TokenState | undefined> {
  try {
    return store.read();
  } catch (e) {
    if (!(e instanceof CorruptStateError)) throw e;
    const stamp = new Date().toISOString().replace(/[:.]/g, "-");
    const aside = `${store.file}.corrupt-${stamp}`;
    try {
      await chmod(store.file, 0o600);
      await rename(store.file, aside);
    } catch (e2) {
      throw fileError(store.file, "move the corrupt token state aside", e2, STATE_WHERE);
    }
    warn(`${store.file}: token state is corrupt; moved it aside to ${aside}`);
    return undefined;
  }
}

/** Exclusive lock across read -> network -> write, so parallel runs never reuse a rotated token. */
export async function withStateLock<T>(
  store: StateStore,
  fn: () => Promise<T>,
  opts: LockOptions = {},
): Promise<T> {
  const created = await ensureDir(store.dir, STATE_WHERE);
  try {
    return await withLock(store.file, fn, { where: STATE_WHERE, ...opts });
  } catch (e) {
    // A failed command leaves the tree as it found it, down to the directories.
    await removeCreatedDirs(store.dir, created);
    throw e;
  }
}

export async function removeState(store: StateStore): Promise<boolean> {
  try {
    await unlink(store.file);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw fileError(store.file, "remove the token state", e, STATE_WHERE);
  }
}
