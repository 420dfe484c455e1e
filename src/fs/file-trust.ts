/**
 * Files another user could have written are never trusted (docs/security.md, "Threat model"): a token state
 * or netrc that another uid owns or may replace could name another token endpoint, or hand our
 * token to its owner. These checks say why a file is refused; the callers turn that into errors.
 */

/** A file mode as people write it: 0600. */
export function formatMode(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, "0");
}

export interface Owned {
  uid: number;
  mode: number;
}

const myUid = (): number | undefined => process.getuid?.();

/** "uid 1001 (alice)", or "root". */
export function describeUid(uid: number): string {
  if (uid === 0) return "root";
  try {
    if (uid === myUid()) return `uid ${uid} (${process.getBuiltinModule("node:os").userInfo().username})`;
  } catch {
    // no passwd entry
  }
  return `uid ${uid}`;
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
