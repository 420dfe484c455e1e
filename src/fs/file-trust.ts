/**
 * Files another user could have written are never trusted (docs/security.md, "Threat model"): a token state
 * or netrc that another uid owns or may replace could name another token endpoint, or hand our
 * token to its owner. These checks say why a file is refused; the callers turn that into errors.
 */

import { lstatSync, readFileSync, readlinkSync, statSync, type Stats } from "node:fs";
import { dirname, isAbsolute, join, resolve, sep } from "node:path";

/** A file mode as people write it: 0600. */
export function formatMode(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, "0");
}

export interface Owned {
  uid: number;
  mode: number;
}

const myUid = (): number | undefined => process.getuid?.();

/** The user name of a uid from /etc/passwd (printable characters only), or undefined. */
export function userName(uid: number): string | undefined {
  try {
    if (uid === myUid()) return process.getBuiltinModule("node:os").userInfo().username;
  } catch {
    // no passwd entry for us: look in the file anyway
  }
  let text: string;
  try {
    text = readFileSync("/etc/passwd", "utf8");
  } catch {
    return undefined;
  }
  for (const line of text.split("\n")) {
    const [name, , id] = line.split(":");
    if (name !== undefined && id !== undefined && Number(id) === uid && /^[\w.-]{1,64}$/.test(name))
      return name;
  }
  return undefined;
}

/** "uid 1001 (alice)", or "root". */
export function describeUid(uid: number): string {
  if (uid === 0) return "root";
  const name = userName(uid);
  return name === undefined ? `uid ${uid}` : `uid ${uid} (${name})`;
}

/**
 * The hint for a file or directory of a systemd service's dynamic user (DynamicUser=, uids
 * 61184-65519 in systemd.exec(5)), such as the NixOS server module's unit: it is that service's
 * own, so the hint is never to remove it (the Nix daemon may read the netrc in it).
 */
export function serviceUserHint(uid: number): string | undefined {
  if (uid < 61184 || uid > 65519) return undefined;
  return `uid ${uid} is a systemd service's dynamic user: leave it to that service and read its log (the NixOS server module's: \`journalctl -u nix-cache-login-server\`, see docs/nix-modules.md)`;
}

/** Why a file or directory owned by `st.uid` is not ours to trust, or undefined: ours or root's. */
export function foreignOwner(st: Owned): string | undefined {
  const uid = myUid();
  if (uid === undefined || st.uid === uid || st.uid === 0) return undefined;
  return `owned by ${describeUid(st.uid)}, not by ${describeUid(uid)} who runs nix-cache-login (nor root)`;
}

/**
 * Why others could replace what is in a directory (or rewrite a file), or undefined. With
 * `ownGroup`, group write is fine (the group is one of our own).
 */
export function writableByOthers(st: Owned, ownGroup = false): string | undefined {
  const bits = st.mode & (ownGroup ? 0o002 : 0o022);
  if (bits === 0) return undefined;
  const who = bits === 0o022 ? "group and others" : bits === 0o020 ? "group" : "others";
  return `writable by ${who} (mode ${formatMode(st.mode)})`;
}

/** Set-id-less sticky bit: in such a directory only a file's owner may rename or remove it. */
export function isSticky(st: Owned): boolean {
  return (st.mode & 0o1000) !== 0;
}

/**
 * A path another user could redirect: a directory on the way (or a symlink, or the directory a
 * symlink points to) that is not ours or root's, or that others may write to. `at` is the part of
 * the path at fault; `fix` says what to do about it.
 */
export class UntrustedPath extends Error {
  constructor(
    readonly at: string,
    readonly why: string,
    readonly fix: string,
  ) {
    super(`${at} is ${why}`);
    this.name = "UntrustedPath";
  }
}

export interface WalkedPath {
  /** The path with every symbolic link resolved. */
  real: string;
  /** The final entry (lstat of `real`), or undefined when a part of the path does not exist. */
  st: Stats | undefined;
  /** Why there is no final entry: ENOENT, or ENOTDIR (a file where a directory should be). */
  missing?: "ENOENT" | "ENOTDIR";
}

/** Symbolic links followed at most on one path, as Linux's MAXSYMLINKS. */
const MAX_LINKS = 40;

/**
 * Why others could replace the entries of a directory we pass through, or undefined. A sticky
 * directory (/tmp, /nix/store) is fine: there only an entry's owner may rename or remove it, and
 * each entry on the path is checked to be ours or root's. Group write is fine on a directory of
 * ours whose group is our primary group (user private groups with umask 002).
 */
function openToOthers(st: Owned & { gid: number }): string | undefined {
  if (isSticky(st)) return undefined;
  const ownGroup = st.uid === myUid() && st.gid === process.getgid?.();
  return writableByOthers(st, ownGroup);
}

/**
 * Walks `path` from `/` one component at a time, following symbolic links, so that nothing on the
 * way is another user's to change (the token state's rule, applied to every file we read or
 * write): each directory, each symbolic link and each directory it leads to must be ours or
 * root's, and no directory we pass through may be writable by others (a sticky one is fine). The
 * final entry's owner and mode are the caller's to judge (a file's rule differs from a
 * directory's). Once this passes, no other user can change what the path names. Throws
 * UntrustedPath; file-system errors other than a missing part are thrown as they are.
 */
export function walkTrusted(path: string): WalkedPath {
  const rest = resolve(path)
    .split(sep)
    .filter((c) => c !== "");
  let cur: string = sep;
  let curSt = statSync(cur);
  const ownerProblem = (at: string, st: Owned, what: string): UntrustedPath | undefined => {
    const owner = foreignOwner(st);
    return owner === undefined
      ? undefined
      : new UntrustedPath(
          at,
          `${what} ${owner}`,
          `check who made ${at}; use a path that only you (or root) control`,
        );
  };
  const root = ownerProblem(cur, curSt, "a directory");
  if (root !== undefined) throw root;
  let links = 0;
  while (rest.length > 0) {
    const name = rest.shift() as string;
    if (name === ".") continue;
    if (name === "..") {
      cur = dirname(cur);
      curSt = statSync(cur);
      continue;
    }
    const open = openToOthers(curSt);
    if (open !== undefined) {
      throw new UntrustedPath(
        cur,
        `a directory ${open} and not sticky, so another user could replace what is in it`,
        `\`chmod go-w ${cur}\`, or use a path in a directory only you (or root) can write`,
      );
    }
    // cur is absolute and normalised and name one component: no need for join()'s normalising.
    const next = cur === sep ? `${sep}${name}` : `${cur}${sep}${name}`;
    let st: Stats;
    try {
      st = lstatSync(next);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "ENOENT" || code === "ENOTDIR")
        return { real: join(next, ...rest), st: undefined, missing: code };
      throw e;
    }
    if (st.isSymbolicLink()) {
      const bad = ownerProblem(next, st, "a symbolic link");
      if (bad !== undefined) throw bad;
      if (++links > MAX_LINKS)
        throw Object.assign(new Error(`${next}: too many symbolic links`), { code: "ELOOP" });
      const target = readlinkSync(next);
      rest.unshift(...target.split(sep).filter((c) => c !== ""));
      if (isAbsolute(target)) {
        cur = sep;
        curSt = statSync(cur);
      }
      continue;
    }
    if (rest.length === 0) return { real: next, st };
    if (!st.isDirectory()) return { real: join(next, ...rest), st: undefined, missing: "ENOTDIR" };
    const bad = ownerProblem(next, st, "a directory");
    if (bad !== undefined) throw bad;
    cur = next;
    curSt = st;
  }
  return { real: cur, st: curSt };
}
