import { randomBytes } from "node:crypto";
import { lstat, open, readdir, rename, stat, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { CliError } from "../errors.ts";
import { describeUid, isSticky } from "./file-trust.ts";
import { errnoCode, fileError } from "./fs-errors.ts";
import { bootId } from "./boot.ts";
import { holderState, localHost, withLockFile, type LockOptions } from "./lock-file.ts";
import { makeDirs } from "./make-dirs.ts";

/**
 * Creates missing parent directories with mode 0700, one level at a time; existing directories are
 * left alone. `where` names the setting that chose the path, for messages.
 */
export function ensureDir(dir: string, where?: string): Promise<string | undefined> {
  return makeDirs(dir, where);
}

/** Undoes ensureDir after a failure: removes dir and its parents up to `created`, if still empty. */
export async function removeCreatedDirs(dir: string, created: string | undefined): Promise<void> {
  if (created === undefined) return;
  const { rmdir } = await import("node:fs/promises");
  for (let d = dir; d.startsWith(created); d = dirname(d)) {
    try {
      await rmdir(d);
    } catch {
      return;
    }
    if (d === created) return;
  }
}

/**
 * Replaces a file atomically: a temp file in the same directory (mode 0600 or the old file's mode
 * when stricter), fsync, rename, fsync the directory. A reader sees the old or the new file, never
 * half of one. Returns the mode the file ended up with and the mode it had before (if any).
 */
/** The name of our temp file for `path`: `.<name>.<pid>.<12 hex>.tmp`, in the same directory. */
export function tempFileName(path: string, pid: number = process.pid): string {
  return join(dirname(path), `.${basename(path)}.${pid}.${randomBytes(6).toString("hex")}.tmp`);
}

/**
 * Removes temp files of ours for `path` that a killed process left behind: they may hold a token.
 * Ours means: our name pattern (a lock's temp file too), owned by us, and written by a process that
 * is gone. A live writer's temp file is never touched.
 */
export async function removeStaleTempFiles(path: string): Promise<string[]> {
  const dir = dirname(path);
  const name = basename(path);
  const esc = (t: string) => t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const patterns = [
    new RegExp(`^\\.${esc(name)}\\.(\\d+)\\.[0-9a-f]{12}\\.tmp$`),
    new RegExp(`^${esc(name)}\\.lock\\.(\\d+)\\.[0-9a-f]{16}\\.tmp$`),
  ];
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  const uid = process.getuid?.();
  for (const n of names) {
    const pid = patterns.map((re) => re.exec(n)?.[1]).find((m) => m !== undefined);
    if (pid === undefined) continue;
    const p = join(dir, n);
    const st = await lstat(p).catch(() => undefined);
    if (st === undefined || !st.isFile() || (uid !== undefined && st.uid !== uid)) continue;
    const alive =
      Number(pid) === process.pid ||
      holderState({
        pid: Number(pid),
        boot: bootId(),
        start: null,
        host: localHost(),
        since: "",
        command: "",
        nonce: "",
      }) !== "dead";
    // A PID that runs again may be another program: a temp file older than any write is stale too.
    if (alive && Date.now() - st.mtimeMs < 10 * 60_000) continue;
    if (
      await unlink(p).then(
        () => true,
        () => false,
      )
    )
      removed.push(p);
  }
  return removed;
}

export async function writeFileAtomic(
  path: string,
  data: string,
  encoding: BufferEncoding = "latin1",
  where?: string,
  /** For a file that holds no secret and must be readable (a systemd unit): its mode, as given. */
  opts: { mode?: number } = {},
): Promise<{ mode: number; previousMode: number | undefined }> {
  const dir = dirname(path);
  await ensureDir(dir, where);
  await removeStaleTempFiles(path);
  let previous: { mode: number; uid: number; gid: number } | undefined;
  try {
    const st = await stat(path);
    previous = { mode: st.mode & 0o777, uid: st.uid, gid: st.gid };
  } catch (e) {
    if (errnoCode(e) !== "ENOENT") throw fileError("file_stat_failed", path, "look at the file", e, where);
  }
  // Never loosen: keep only owner bits, at most rw. A file that held secrets stays private.
  const mode = opts.mode ?? (previous === undefined ? 0o600 : previous.mode & 0o600);
  const tmp = tempFileName(path);
  let fh;
  try {
    fh = await open(tmp, "wx", 0o600);
  } catch (e) {
    throw fileError("temp_file_create_failed", tmp, "create a temp file", e, where);
  }
  try {
    await fh.writeFile(data, encoding);
    await fh.chmod(mode);
    // Never chown to the previous owner: a file holding our token is never handed to another uid
    // (netrc/file.ts refuses a file owned by anyone but us or root before we get here).
    await fh.sync();
  } catch (e) {
    await fh.close();
    await unlink(tmp).catch(() => undefined);
    throw fileError("temp_file_write_failed", tmp, `write the new ${basename(path)}`, e, where);
  }
  await fh.close();
  try {
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw fileError("file_replace_failed", path, `replace the file`, e, where);
  }
  await syncDir(dir);
  return { mode, previousMode: previous?.mode };
}

/**
 * Whether `bytes` more can be written next to `path` now: a temp file of that size is written,
 * synced and removed, in the file's directory or, while that does not exist yet, the nearest one
 * above it (nothing is created). Used before a sign-in, so that a full disk or a read-only file
 * system fails before the user spends a browser sign-in (issue 20), not after it.
 */
export async function checkRoom(path: string, bytes: number, action: string, where?: string): Promise<void> {
  let dir = dirname(path);
  for (;;) {
    const st = await stat(dir).catch(() => undefined);
    if (st?.isDirectory() === true || dirname(dir) === dir) break;
    dir = dirname(dir);
  }
  const probe = tempFileName(join(dir, basename(path)));
  let fh;
  try {
    fh = await open(probe, "wx", 0o600);
    await fh.write(Buffer.alloc(bytes, 0x20), 0, bytes, 0);
    await fh.sync();
  } catch (e) {
    throw fileError("no_room_to_save", path, action, e, where);
  } finally {
    await fh?.close().catch(() => undefined);
    await unlink(probe).catch(() => undefined);
  }
}

/** fsync a directory after a rename in it, where the file system allows it. */
export async function syncDir(dir: string): Promise<void> {
  const dh = await open(dir, "r").catch(() => undefined);
  if (dh === undefined) return;
  try {
    await dh.sync();
  } catch {
    // Some file systems refuse fsync on directories; the rename itself is still atomic.
  } finally {
    await dh.close();
  }
}

/**
 * A lock another user holds (one could make it in a shared directory) is never waited for: we
 * could not remove it when stale, and it is not another run of ours. Fails at once, saying whose.
 */
async function refuseForeignLock(lockPath: string): Promise<void> {
  let st;
  try {
    st = await lstat(lockPath);
  } catch {
    return;
  }
  const uid = process.getuid?.();
  if (uid === undefined || st.uid === uid || st.uid === 0) return;
  const owner = describeUid(st.uid);
  const remove = st.isDirectory() ? "rmdir" : "rm";
  const dir = dirname(lockPath);
  const shared = await stat(dir).then(
    (d) => isSticky(d) && d.uid !== uid && uid !== 0,
    () => false,
  );
  throw new CliError(
    "lock_foreign_owner",
    `${lockPath} was made by ${owner}, not by you: another user's lock is not waited for, and it blocks every write of ${basename(lockPath).replace(/\.lock$/, "")}`,
    {
      // A file (./lock-file.ts); a directory is the lock of a version before 0.2 (proper-lockfile).
      hint: shared
        ? `in the shared directory ${dir} (sticky) only ${owner} or root can remove it: ask them to (\`${remove} ${lockPath}\`), or point the setting at a file in a directory of your own, where no one else can block it`
        : `check who made it; if no nix-cache-login of theirs should write here, remove it (\`${remove} ${lockPath}\`)`,
    },
  );
}

/**
 * Runs fn while holding an exclusive lock on `<dataPath>.lock`, a sibling, never the data file
 * itself: a rename swaps the data file's inode, so a lock held on it would protect nothing.
 */
export async function withLock<T>(
  dataPath: string,
  fn: () => Promise<T>,
  opts: LockOptions = {},
): Promise<T> {
  await ensureDir(dirname(dataPath), opts.where);
  await refuseForeignLock(`${dataPath}.lock`);
  return withLockFile(`${dataPath}.lock`, fn, opts);
}
