/**
 * An exclusive lock that is free the moment its holder dies.
 *
 * The lock is a file `<data>.lock` that names its holder: PID, the kernel's boot id, the process's
 * start time (so a reused PID does not count) and host. It is created complete and atomically (a
 * temp file hard-linked into place: link() fails if the lock exists), so no reader ever sees half a
 * record. A lock whose holder is gone (another boot, no such process, another process with that
 * PID) is taken over at once; only a live holder is waited for, with a note on stderr after a
 * second. Any other error (read-only file system, permission denied, ...) fails at once, naming the
 * file and the cause.
 *
 * Not proper-lockfile: it judges a lock by its mtime, so a crashed holder stalls everyone for the
 * stale period (60 s), and it retried every error, so an unwritable directory hung for minutes.
 * Node has no flock(2); PID + boot id + start time is what a lock file can know.
 *
 * Taking over a dead holder's lock is serialised by a file named after that lock's nonce
 * (`<lock>.break-<nonce>`, created with O_EXCL): only its creator may remove the lock holding that
 * nonce, so two waiters can never both remove a lock (and so never remove a fresh one).
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { link, lstat, open, rmdir, unlink, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { setTimeout } from "node:timers/promises";
import { CliError } from "../errors.ts";
import { bootId } from "./boot.ts";
import { describeFsError, errnoCode, fsHint } from "./fs-errors.ts";
import { readOpened } from "./read-opened.ts";

export interface LockRecord {
  pid: number;
  /** /proc/sys/kernel/random/boot_id, or the boot time to the minute where there is none. */
  boot: string;
  /** Field 22 of /proc/PID/stat (clock ticks after boot); null off Linux. */
  start: string | null;
  host: string;
  /** ISO 8601: when the lock was taken. */
  since: string;
  /** What the holder runs, for the waiting note ("refresh"). */
  command: string;
  nonce: string;
}

export interface LockOptions {
  /** The setting that chose the data file's path, for messages ("netrc_path in /x/config.toml"). */
  where?: string | undefined;
  /** Longest wait for a live holder. */
  maxWaitMs?: number | undefined;
  /** Gets the waiting note (stderr). */
  notify?: ((line: string) => void) | undefined;
}

const DEFAULT_MAX_WAIT_MS = 150_000;
const NOTE_AFTER_MS = 1000;

/** Host names are shown on the terminal: only what a host name may hold. */
function cleanHost(name: string): string {
  return name.replace(/[^\w.-]/g, "?").slice(0, 100);
}

/** This host's name, as lock records carry it. */
export function localHost(): string {
  return cleanHost(hostname());
}

/** The start time of a process, to tell it from a later one with the same PID; null if unknown. */
export function processStart(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return fields[19] ?? null;
  } catch {
    return null;
  }
}

/** Whether the lock's holder may still run: "dead" only when that is certain. */
export function holderState(rec: LockRecord): "alive" | "dead" | "unknown" {
  if (rec.host !== localHost()) return "unknown";
  if (rec.boot !== "" && bootId() !== "" && rec.boot !== bootId()) return "dead";
  try {
    process.kill(rec.pid, 0);
  } catch (e) {
    if (errnoCode(e) === "ESRCH") return "dead";
  }
  if (rec.start !== null && process.platform === "linux") {
    const start = processStart(rec.pid);
    if (start !== null && start !== rec.start) return "dead";
  }
  return "alive";
}

function parseRecord(text: string): LockRecord | undefined {
  try {
    const r = JSON.parse(text) as Partial<LockRecord>;
    if (typeof r.pid !== "number" || typeof r.boot !== "string" || typeof r.nonce !== "string")
      return undefined;
    if (!/^[0-9a-f]{8,64}$/.test(r.nonce)) return undefined;
    return {
      pid: r.pid,
      boot: r.boot,
      start: typeof r.start === "string" ? r.start : null,
      // Shown on the terminal: only what a host name may hold.
      host: typeof r.host === "string" ? cleanHost(r.host) : "",
      since: typeof r.since === "string" ? r.since : "",
      command: typeof r.command === "string" ? r.command.replace(/[^\w .-]/g, "?").slice(0, 40) : "",
      nonce: r.nonce,
    };
  } catch {
    return undefined;
  }
}

type Seen =
  | { kind: "none" }
  | { kind: "record"; rec: LockRecord }
  /** A directory (proper-lockfile, before 0.2) or a file we cannot read as a record. */
  | { kind: "foreign"; isDir: boolean; mtimeMs: number };

async function look(lockPath: string): Promise<Seen> {
  let st;
  try {
    st = await lstat(lockPath);
  } catch (e) {
    if (errnoCode(e) === "ENOENT") return { kind: "none" };
    throw e;
  }
  if (st.isDirectory()) return { kind: "foreign", isDir: true, mtimeMs: st.mtimeMs };
  // Reading a FIFO would wait for a writer, forever; no lock of ours (or an older version's) is one.
  if (!st.isFile()) {
    throw new CliError("lock_not_regular_file", `${lockPath}: the lock is not a regular file`, {
      hint: `check what made it, then remove it (\`rm ${lockPath}\`)`,
    });
  }
  let text: string | undefined;
  try {
    text = readRegular(lockPath);
  } catch (e) {
    if (errnoCode(e) === "ENOENT") return { kind: "none" };
    throw e;
  }
  if (text === undefined) return look(lockPath);
  const rec = parseRecord(text);
  return rec === undefined ? { kind: "foreign", isDir: false, mtimeMs: st.mtimeMs } : { kind: "record", rec };
}

/** proper-lockfile refreshed its lock directory's mtime every 10 s and judged it stale at 60 s. */
const FOREIGN_STALE_MS = 60_000;

function processCommand(): string {
  // The command word (an option's value, such as a path after --config, does not look like one).
  const arg = process.argv.slice(2).find((a) => /^[a-z][a-z-]{1,30}$/.test(a));
  return arg === undefined ? "nix-cache-login" : `nix-cache-login ${arg}`;
}

function clock(iso: string): string {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? "an unknown time" : `${d.toISOString().slice(11, 19)} UTC`;
}

/** The file a writer makes before it links it into place as the lock; stale ones are cleaned up. */
export function lockTempName(lockPath: string, pid: number, nonce: string): string {
  return `${lockPath}.${pid}.${nonce}.tmp`;
}

/**
 * Tries once to put the record in place as the lock; false when a lock exists. The record is
 * written to `tmp` first (rewritten when it is over a second old, so `since` stays true).
 */
async function tryCreate(
  lockPath: string,
  tmp: { path: string; writtenAt: number },
  rec: LockRecord,
): Promise<boolean> {
  if (performance.now() - tmp.writtenAt > NOTE_AFTER_MS) {
    rec.since = new Date().toISOString();
    // Exclusive the first time: never write through something planted under our name.
    await writeFile(tmp.path, `${JSON.stringify(rec)}\n`, {
      mode: 0o600,
      flag: tmp.writtenAt === -Infinity ? "wx" : "w",
    });
    tmp.writtenAt = performance.now();
  }
  try {
    await link(tmp.path, lockPath);
    return true;
  } catch (e) {
    const code = errnoCode(e);
    if (code === "EEXIST") return false;
    if (code === "EPERM" || code === "ENOTSUP" || code === "EOPNOTSUPP" || code === "ENOSYS") {
      // No hard links here (some FUSE and FAT file systems): create the lock exclusively instead.
      try {
        await createWhole(lockPath, `${JSON.stringify(rec)}\n`);
        return true;
      } catch (e2) {
        if (errnoCode(e2) === "EEXIST") return false;
        throw e2;
      }
    }
    throw e;
  }
}

/**
 * Creates `path` (EEXIST if it exists) holding `text`, or not at all: when the write fails (a full
 * disk), the file just made is removed again, so no empty lock is left for others to wait on.
 */
export async function createWhole(path: string, text: string): Promise<void> {
  const fh = await open(path, "wx", 0o600);
  try {
    await fh.writeFile(text);
    await fh.close();
  } catch (e) {
    await fh.close().catch(() => undefined);
    await unlink(path).catch(() => undefined);
    throw e;
  }
}

/** A lock record or a break file is a line; a file with far more is no lock of ours. */
const MAX_LOCK_BYTES = 64 * 1024;
const notRegular = new Error("not a regular file");
const tooLong = new Error("too long for a lock");

/**
 * A regular file's text ("" when it is far too long to be ours), or undefined when the path names
 * anything else; not through a symbolic link, and a FIFO is not waited on (./read-opened.ts).
 */
function readRegular(path: string): string | undefined {
  try {
    return readOpened(path, {
      noFollow: true,
      check: (st) => {
        if (!st.isFile()) throw notRegular;
      },
      maxBytes: MAX_LOCK_BYTES,
      tooLarge: () => tooLong,
    });
  } catch (e) {
    if (e === notRegular) return undefined;
    if (e === tooLong) return "";
    throw e;
  }
}

/**
 * A break file whose waiter has not written its PID within this long (by this waiter's monotonic
 * clock, from when it first saw it so: the file's mtime is the wall clock's, which may be wrong)
 * died between making it and writing.
 */
const BREAK_ABANDONED_MS = 5_000;

/** The PID-less break file this waiter saw first, and when (performance.now()). */
type SeenBreak = { path: string; since: number } | undefined;

/**
 * Removes the dead holder's lock, unless another waiter is already doing so. True when this call
 * removed it (the caller tries again at once), false when it is someone else's turn.
 */
async function takeOver(lockPath: string, dead: LockRecord, seen: { break: SeenBreak }): Promise<boolean> {
  const breakPath = `${lockPath}.break-${dead.nonce}`;
  let fh;
  try {
    fh = await open(breakPath, "wx", 0o600);
  } catch (e) {
    if (errnoCode(e) !== "EEXIST") throw e;
    // A waiter killed while taking over leaves its break file: free it when its writer is gone.
    let text: string | undefined;
    try {
      text = readRegular(breakPath);
    } catch {
      text = undefined;
    }
    const pid = Number(text?.split(" ")[0]);
    if (text === undefined) {
      // No waiter makes anything but a regular file (a FIFO would block whoever read it).
      await unlink(breakPath).catch(() => undefined);
    } else if (!Number.isInteger(pid) || pid <= 0) {
      if (seen.break?.path !== breakPath) seen.break = { path: breakPath, since: performance.now() };
      else if (performance.now() - seen.break.since > BREAK_ABANDONED_MS) {
        await unlink(breakPath).catch(() => undefined);
        seen.break = undefined;
      }
    } else {
      const start = text.split(" ")[1]?.trim() ?? "";
      const rec = { ...dead, pid, start: start === "" ? null : start, host: localHost(), boot: bootId() };
      if (holderState(rec) === "dead") await unlink(breakPath).catch(() => undefined);
    }
    return false;
  }
  try {
    await fh.writeFile(`${process.pid} ${processStart(process.pid) ?? ""}\n`);
    await fh.close();
    const now = await look(lockPath);
    if (now.kind === "record" && now.rec.nonce === dead.nonce) await unlink(lockPath);
    return true;
  } finally {
    await unlink(breakPath).catch(() => undefined);
  }
}

/**
 * Runs fn while holding the lock at `lockPath` (a sibling of the data file, never the data file: a
 * rename swaps the data file's inode, so a lock held on it would protect nothing).
 */
export async function withLockFile<T>(
  lockPath: string,
  fn: () => Promise<T>,
  opts: LockOptions = {},
): Promise<T> {
  const rec: LockRecord = {
    pid: process.pid,
    boot: bootId(),
    start: processStart(process.pid),
    host: localHost(),
    since: new Date().toISOString(),
    command: processCommand(),
    nonce: randomBytes(8).toString("hex"),
  };
  const started = performance.now();
  const maxWait = opts.maxWaitMs ?? DEFAULT_MAX_WAIT_MS;
  const notify = opts.notify ?? ((line: string) => process.stderr.write(`note: ${line}\n`));
  let noted = false;
  let delay = 5;
  const tmp = { path: lockTempName(lockPath, rec.pid, rec.nonce), writtenAt: -Infinity };
  const breaking = { break: undefined as SeenBreak };
  const failed = (e: unknown): CliError =>
    e instanceof CliError
      ? e
      : new CliError(
          "lock_create_failed",
          `${lockPath}: cannot create the lock file: ${describeFsError(e)}`,
          {
            hint: fsHint(e, opts.where),
            cause: e,
          },
        );
  try {
    for (;;) {
      let seen: Seen;
      try {
        if (await tryCreate(lockPath, tmp, rec)) break;
        seen = await look(lockPath);
      } catch (e) {
        throw failed(e);
      }
      if (seen.kind === "none") continue;
      // A dead holder's lock is taken over; when that is another waiter's turn (its break file
      // names the lock), this one waits as for a live holder.
      const breakFile =
        seen.kind === "record" && holderState(seen.rec) === "dead"
          ? `${lockPath}.break-${seen.rec.nonce}`
          : undefined;
      if (seen.kind === "record") {
        if (breakFile !== undefined && (await takeOver(lockPath, seen.rec, breaking).catch(() => false)))
          continue;
      } else if (Date.now() - seen.mtimeMs > FOREIGN_STALE_MS) {
        // A lock left by an older version, or a record we cannot read: stale once old enough.
        await (seen.isDir ? rmdir(lockPath) : unlink(lockPath)).catch(() => undefined);
        continue;
      }
      const waited = performance.now() - started;
      const holder =
        seen.kind === "record"
          ? `${seen.rec.command || "nix-cache-login"} (process ${seen.rec.pid}${seen.rec.host === localHost() ? "" : ` on ${seen.rec.host}`}${breakFile === undefined ? "" : ", which has exited; another waiter is taking it over"}) since ${clock(seen.rec.since)}`
          : "an older nix-cache-login";
      if (waited > maxWait) {
        throw new CliError(
          "lock_timeout",
          `${lockPath}: gave up after ${Math.round(waited / 1000)}s waiting for the lock, held by ${holder}`,
          {
            hint:
              breakFile !== undefined
                ? `if no other nix-cache-login runs, remove ${breakFile}`
                : seen.kind === "record"
                  ? `if process ${seen.rec.pid} is stuck, end it: the lock is free as soon as it exits`
                  : `remove ${lockPath} if no other nix-cache-login runs`,
          },
        );
      }
      if (!noted && waited > NOTE_AFTER_MS) {
        noted = true;
        notify(`waiting for ${lockPath}: held by ${holder}`);
      }
      await setTimeout(delay + Math.random() * delay);
      delay = Math.min(delay * 1.5, 100);
    }
  } finally {
    await unlink(tmp.path).catch(() => undefined);
  }
  try {
    return await fn();
  } finally {
    // Only our own lock: a lock that is not ours any more (taken over by mistake) is left alone.
    const now = await look(lockPath).catch(() => undefined);
    if (now?.kind === "record" && now.rec.nonce === rec.nonce) await unlink(lockPath).catch(() => undefined);
  }
}
