import { chmod, open, readdir, rename, stat, unlink, type FileHandle } from "node:fs/promises";
import { basename, join } from "node:path";
import {
  ensureDir,
  removeCreatedDirs,
  removeStaleTempFiles,
  syncDir,
  tempFileName,
  withLock,
  writeFileAtomic,
} from "../fs/atomic-file.ts";
import { fileError } from "../fs/fs-errors.ts";
import type { LockOptions } from "../fs/lock-file.ts";
import { checkStateDir, CorruptStateError, type StateStore, type TokenState } from "./state.ts";

/** The setting that chose the state directory, for messages. */
export const STATE_WHERE = "the state directory ($XDG_STATE_HOME/nix-cache-login)";

/**
 * Space for the next state file, taken before a grant is sent: once the provider has rotated the
 * refresh token, a full disk must not keep us from saving it. The temp file is written and synced
 * at more than the state's final size, then filled in place (no new blocks) and renamed.
 */
export interface StateReservation {
  readonly path: string;
  readonly size: number;
  fh: FileHandle | undefined;
  release(): Promise<void>;
}

export async function reserveStateWrite(store: StateStore): Promise<StateReservation> {
  await ensureDir(store.dir, STATE_WHERE);
  checkStateDir(store.dir);
  await removeStaleTempFiles(store.file);
  const current = await stat(store.file).then(
    (st) => st.size,
    () => 0,
  );
  // Room for tokens (curl takes at most 4 KiB each) and a discovery document, with margin.
  const size = Math.max(32 * 1024, 2 * current + 16 * 1024);
  const path = tempFileName(store.file);
  let fh: FileHandle | undefined;
  try {
    fh = await open(path, "wx", 0o600);
    await fh.write(Buffer.alloc(size, 0x20), 0, size, 0);
    await fh.sync();
  } catch (e) {
    await fh?.close().catch(() => undefined);
    await unlink(path).catch(() => undefined);
    throw fileError(
      "state_reserve_failed",
      path,
      `make room for the next ${basename(store.file)} before renewing`,
      e,
      STATE_WHERE,
    );
  }
  const r: StateReservation = {
    path,
    size,
    fh,
    async release() {
      if (r.fh === undefined) return;
      await r.fh.close().catch(() => undefined);
      r.fh = undefined;
      await unlink(path).catch(() => undefined);
    },
  };
  return r;
}

/** Writes the state; `touch: false` keeps updated_at (it marks renewals, which others look at). */
export async function writeState(
  store: StateStore,
  state: TokenState,
  opts: { touch?: boolean; reserved?: StateReservation | undefined } = {},
): Promise<void> {
  const r = opts.reserved;
  // A reservation was made in the directory, checked, under the lock held since: not again.
  if (r === undefined) {
    await ensureDir(store.dir, STATE_WHERE);
    checkStateDir(store.dir);
  }
  // The keychain first: once it holds the new token, the file may say so. A crash between the two
  // leaves the keychain's token with a file that still names the old place (or the keychain):
  // either way the next run finds a refresh token, and the next write puts it right.
  const stashed = store.vault === undefined ? { file: state } : await store.vault.stash(state);
  const kept = stashed.file;
  const updated = opts.touch === false ? kept : { ...kept, updated_at: new Date().toISOString() };
  const text = `${JSON.stringify(updated, null, 2)}\n`;
  const bytes = Buffer.from(text, "utf8");
  if (r?.fh !== undefined && bytes.length <= r.size) {
    const fh = r.fh;
    r.fh = undefined;
    try {
      await fh.write(bytes, 0, bytes.length, 0);
      await fh.truncate(bytes.length);
      await fh.sync();
      await fh.close();
      await rename(r.path, store.file);
    } catch (e) {
      await fh.close().catch(() => undefined);
      await unlink(r.path).catch(() => undefined);
      throw fileError("state_write_failed", store.file, "save the token state", e, STATE_WHERE);
    }
    await syncDir(store.dir);
  } else {
    await r?.release();
    await writeFileAtomic(store.file, text, "utf8", STATE_WHERE);
  }
  await stashed.after?.();
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
      throw fileError(
        "state_set_aside_failed",
        store.file,
        "move the corrupt token state aside",
        e2,
        STATE_WHERE,
      );
    }
    warn(`${store.file}: token state is corrupt; moved it aside to ${aside}`);
    await removeCorruptCopies(store, KEEP_CORRUPT_COPIES);
    return undefined;
  }
}

/** How many `.corrupt-<time>` copies of a token state are kept for a look; older ones go. */
export const KEEP_CORRUPT_COPIES = 3;

/**
 * Removes the `.corrupt-<time>` copies of the token state but the newest `keep` (their names sort
 * by time); returns the removed paths. `logout` keeps none: they may hold a refresh token.
 */
export async function removeCorruptCopies(store: StateStore, keep: number): Promise<string[]> {
  const prefix = `${basename(store.file)}.corrupt-`;
  const names = await readdir(store.dir).catch(() => [] as string[]);
  const copies = names.filter((n) => n.startsWith(prefix)).sort();
  const removed: string[] = [];
  for (const name of copies.slice(0, Math.max(0, copies.length - keep))) {
    const path = join(store.dir, name);
    try {
      await unlink(path);
      removed.push(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") {
        throw fileError(
          "state_copy_unremovable",
          path,
          "remove an old copy of a corrupt token state",
          e,
          STATE_WHERE,
        );
      }
    }
  }
  return removed;
}

/** Exclusive lock across read -> network -> write, so parallel runs never reuse a rotated token. */
export async function withStateLock<T>(
  store: StateStore,
  fn: () => Promise<T>,
  opts: LockOptions = {},
): Promise<T> {
  const created = await ensureDir(store.dir, STATE_WHERE);
  try {
    // The lock file lives in the state directory too: never in one another user controls.
    checkStateDir(store.dir);
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
    throw fileError("state_remove_failed", store.file, "remove the token state", e, STATE_WHERE);
  }
}
