/**
 * Whether a netrc may be used: the token is written there, and what is read there decides whether
 * a token counts as installed. Reading and writing apply the same rule (issue 21): the file, the
 * symbolic link that names it (a Home Manager link) and every directory on both paths must be ours
 * or root's, and no one else may replace the file. A symlink into another user's file is refused,
 * as is a file we would have to hand back (chown) to another uid.
 */
import { lstatSync, statSync, type Stats } from "node:fs";
import { dirname } from "node:path";
import { CliError } from "../errors.ts";
import {
  foreignOwner,
  isSticky,
  serviceUserHint,
  UntrustedPath,
  walkTrusted,
  writableByOthers,
} from "../fs/file-trust.ts";
import { fsReason } from "../fs/fs-errors.ts";

export type NetrcUse = "write" | "read";

/** A file-system error about the netrc, naming it; CliErrors pass through. */
export function fsError(path: string, action: string, e: unknown): never {
  if (e instanceof CliError) throw e;
  const err = e as NodeJS.ErrnoException;
  throw new CliError("netrc_io", `netrc_path ${path}: cannot ${action}: ${fsReason(err)}`, {
    hint:
      err.code === "EACCES" || err.code === "EROFS" ? "check the file's owner and permissions" : undefined,
  });
}

function refuse(code: string, path: string, use: NetrcUse, why: string, hint: string): never {
  throw new CliError(
    code,
    `netrc_path ${path}: ${why}; nix-cache-login does not ${use === "write" ? "write a token there" : "use it"}`,
    { hint },
  );
}

/** Every directory above `dir` (and `dir` itself when reached through a link) is ours or root's. */
function walkDirs(dir: string, file: string, use: NetrcUse): void {
  try {
    walkTrusted(dir);
  } catch (e) {
    if (e instanceof UntrustedPath) {
      refuse("netrc_path_untrusted", file, use, `its path goes through ${e.at}, ${e.why}`, e.fix);
    }
    fsError(dir, "use the netrc's directory", e);
  }
}

/** The directory's owner and mode allow the file in it to be replaced only by us (or root). */
function checkNetrcDir(dir: string, file: string, fileUid: number | undefined, use: NetrcUse): void {
  walkDirs(dir, file, use);
  let st: Stats;
  try {
    st = statSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return; // created 0700 by us
    fsError(dir, "use the netrc's directory", e);
  }
  const owner = foreignOwner(st);
  if (owner !== undefined) {
    refuse(
      "netrc_dir_foreign_owner",
      file,
      use,
      `its directory ${dir} is ${owner}`,
      serviceUserHint(st.uid) ?? "point netrc_path at a file in a directory of your own",
    );
  }
  // Group-writable is fine for a group of one's own (user private groups with umask 002): the
  // directory's group is our primary group. Any other group, or others, could replace the file.
  const ownGroup = st.gid === process.getgid?.() && st.uid === process.getuid?.();
  const writable = writableByOthers(st, ownGroup);
  // In a sticky directory (/tmp, /nix/store) only the file's owner, the directory's owner (us or
  // root, checked above) and root may replace it: fine if the file is ours or root's (Home
  // Manager links the netrc to a root-owned file in the sticky, group-writable /nix/store).
  const ours = fileUid === undefined || fileUid === process.getuid?.() || fileUid === 0;
  if (writable !== undefined && !(isSticky(st) && ours)) {
    refuse(
      "netrc_dir_writable_by_others",
      file,
      use,
      `its directory ${dir} is ${writable}${isSticky(st) ? "" : " and not sticky"}, so another user could replace the file`,
      `\`chmod go-w ${dir}\`, or point netrc_path at a file in a directory only you can write`,
    );
  }
}

/**
 * Where the token may be written (or read), after the checks that keep it from another user.
 * Returns the file to use: `path`, or the file a symbolic link at `path` points to.
 */
export function trustedNetrcTarget(path: string, use: NetrcUse = "write"): string {
  let target = path;
  let link: Stats | undefined;
  try {
    link = lstatSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") fsError(path, "use the netrc", e);
  }
  if (link?.isSymbolicLink() === true) {
    const linkOwner = foreignOwner(link);
    if (linkOwner !== undefined) {
      refuse(
        "netrc_symlink_foreign_owner",
        path,
        use,
        `it is a symbolic link ${linkOwner}`,
        `remove the link (\`rm ${path}\`) if you did not make it`,
      );
    }
    checkNetrcDir(dirname(path), path, link.uid, use);
    // Every link and directory on the way to the file, not only the first link and the last
    // directory: a link in another user's directory could point anywhere.
    try {
      target = walkTrusted(path).real;
    } catch (e) {
      if (e instanceof UntrustedPath) {
        refuse("netrc_symlink_untrusted", path, use, `its path goes through ${e.at}, ${e.why}`, e.fix);
      }
      fsError(path, "follow the symbolic link", e);
    }
  }
  let st: Stats | undefined;
  try {
    st = statSync(target);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") fsError(target, "use the netrc", e);
  }
  if (st !== undefined) {
    if (!st.isFile()) {
      refuse("netrc_not_regular_file", target, use, "it is not a regular file", "point netrc_path at a file");
    }
    const owner = foreignOwner(st);
    if (owner !== undefined) {
      refuse(
        "netrc_foreign_owner",
        target,
        use,
        `the file is ${owner}, who could read the token (it is never handed to another user)`,
        serviceUserHint(st.uid) ??
          (path === target
            ? "run nix-cache-login as that user, or point netrc_path at a file of your own"
            : `${path} is a symbolic link to it: remove the link if you did not make it, or point netrc_path at a file of your own`),
      );
    }
    // Another user could have written its entries (our host's, or another's, which Nix would
    // send): neither read nor merged. Group write is fine for a group of one's own, as for the
    // directory below.
    const ownGroup = st.gid === process.getgid?.() && st.uid === process.getuid?.();
    const writable = writableByOthers(st, ownGroup);
    if (writable !== undefined) {
      refuse(
        "netrc_writable_by_others",
        target,
        use,
        `the file is ${writable}, so another user could have written its entries`,
        `check its entries, then \`chmod 600 ${target}\``,
      );
    }
  }
  checkNetrcDir(dirname(target), target, st?.uid, use);
  return target;
}
