import { unlink } from "node:fs/promises";
import { ensureDir, removeCreatedDirs, withLock, writeFileAtomic } from "../atomic-file.ts";
import { checkStateDir, type StateStore, type TokenState } from "./state.ts";

export async function writeState(store: StateStore, state: TokenState): Promise<void> {
  await ensureDir(store.dir);
  checkStateDir(store.dir);
  await writeFileAtomic(
    store.file,
    `${JSON.stringify({ ...state, updated_at: new Date().toISOString() }, null, 2)}\n`,
    "utf8",
  );
}

/** Exclusive lock across read -> network -> write, so parallel runs never reuse a rotated token. */
export async function withStateLock<T>(store: StateStore, fn: () => Promise<T>): Promise<T> {
  const created = await ensureDir(store.dir);
  try {
    // The lock file lives in the state directory too: never in one another user controls.
    checkStateDir(store.dir);
    return await withLock(store.file, fn);
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
    throw e;
  }
}
