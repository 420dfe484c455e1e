/**
 * File-system errors in words, always with the file they are about: a raw `ENOSPC ... write` names
 * no file and no fix.
 */
import { CliError } from "../errors.ts";

/** Error codes in words, for one-line messages (both helpers below; the code itself is for --verbose). */
const WORDS: Record<string, string> = {
  ENOENT: "no such file or directory",
  ENOTDIR: "a part of the path is not a directory",
  EISDIR: "it is a directory",
  ENAMETOOLONG: "a name in the path is too long (the limit is 255 bytes)",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  EROFS: "read-only file system",
  ELOOP: "too many symbolic links (or a symbolic link where none is allowed)",
  ENOSPC: "no space left on device",
  EDQUOT: "disk quota exceeded",
  EEXIST: "it already exists",
  EMFILE: "too many open files",
  EIO: "input/output error",
  EMLINK: "too many links",
  EXDEV: "on another file system",
};

/** A file-system error as a few words, without the code ("read-only file system"). */
export function fsReason(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  const code = err.code;
  if (code !== undefined && code in WORDS) return WORDS[code] as string;
  return (code ?? err.message ?? String(e)).split("\n")[0] as string;
}

export function errnoCode(e: unknown): string | undefined {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === "string" ? code : undefined;
}

/** "read-only file system (EROFS)", or the message of an error without a code. */
export function describeFsError(e: unknown): string {
  const code = errnoCode(e);
  if (code === undefined) return (e as Error).message ?? String(e);
  const words = WORDS[code];
  return words === undefined ? code : `${words} (${code})`;
}

/** What to do about an error writing under `where` (e.g. "netrc_path in /etc/x/config.toml"). */
export function fsHint(e: unknown, where: string | undefined): string | undefined {
  const code = errnoCode(e);
  const key = where === undefined ? "" : ` (${where})`;
  if (code === "EROFS") return `the file system is mounted read-only; choose a writable location${key}`;
  if (code === "EACCES" || code === "EPERM") return `check the owner and permissions of the directory${key}`;
  if (code === "ENOSPC" || code === "EDQUOT") return "free some space and run the command again";
  return undefined;
}

/** A CliError naming the file, the action and the cause; CliErrors pass through unchanged. */
export function fileError(code: string, path: string, action: string, e: unknown, where?: string): CliError {
  if (e instanceof CliError) return e;
  return new CliError(code, `${path}: cannot ${action}: ${describeFsError(e)}`, {
    hint: fsHint(e, where),
    cause: e,
  });
}
