import { randomBytes } from "node:crypto";
import { lstat, mkdir, open, rename, stat, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { CliError } from "./errors.ts";

/** A file mode as people write it: 0600. */
export function formatMode(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, "0");
}

/** Creates missing parent directories with mode 0700; existing directories are left alone. */
export async function ensureDir(dir: string): Promise<string | undefined> {
  return mkdir(dir, { recursive: true, mode: 0o700 });
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
export async function writeFileAtomic(
  path: string,
  data: string,
  encoding: BufferEncoding = "latin1",
): Promise<{ mode: number; previousMode: number | undefined }> {
  const dir = dirname(path);
  await ensureDir(dir);
  let previous: { mode: number; uid: number; gid: number } | undefined;
  try {
    const st = await stat(path);
    previous = { mode: st.mode & 0o777, uid: st.uid, gid: st.gid };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
  // Never loosen: keep only owner bits, at most rw. A file that held secrets stays private.
  const mode = previous === undefined ? 0o600 : previous.mode & 0o600;
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
  const fh = await open(tmp, "wx", 0o600);
  try {
    await fh.writeFile(data, encoding);
    await fh.chmod(mode);
    // Never chown to the previous owner: a file holding our token is never handed to another uid
    // (netrc/file.ts refuses a file owned by anyone but us or root before we get here).
    await fh.sync();
  } catch (e) {
    await fh.close();
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await fh.close();
  try {
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  const dh = await open(dir, "r");
  try {
    await dh.sync();
  } catch {
    // Some file systems refuse fsync on directories; the rename itself is still atomic.
  } finally {
    await dh.close();
  }
  return { mode, previousMode: previous?.mode };
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
  throw new CliError(
    `${lockPath} is held by uid ${st.uid}, not by you: another user's lock is not waited for`,
    {
      hint: `check who made it; if no nix-cache-login of theirs should write here, remove it (\`rm -r ${lockPath}\`)`,
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
  // stderr, where a command's talk goes: locks are taken below the commands, without their context.
  onWait: (line: string) => void = (line) => process.stderr.write(`note: ${line}\n`),
): Promise<T> {
  const { lock } = await import("proper-lockfile");
  const lockPath = `${dataPath}.lock`;
  await ensureDir(dirname(lockPath));
  await refuseForeignLock(lockPath);
  let release: () => Promise<void>;
  // Waiting is normal for a moment (a timer's refresh); longer, say whose lock it is.
  const notice = setTimeout(
    () => onWait(`waiting for ${lockPath}, held by another nix-cache-login...`),
    2000,
  );
  try {
    release = await lock(dataPath, {
      lockfilePath: lockPath,
      realpath: false,
      // A lost lock (its mtime could not be refreshed) must not crash the process mid-write.
      onCompromised: () => undefined,
      stale: 60_000,
      update: 10_000,
      retries: { retries: 600, factor: 1.2, minTimeout: 20, maxTimeout: 250 },
    });
  } catch (e) {
    throw new CliError(`cannot lock ${lockPath}: ${(e as Error).message}`, {
      hint: "another nix-cache-login may be stuck; remove the lock if no other instance runs",
    });
  } finally {
    clearTimeout(notice);
  }
  try {
    return await fn();
  } finally {
    await release().catch(() => undefined);
  }
}
