/** A file-system error as a few words for a one-line message (the code itself is for --verbose). */
const REASONS: Record<string, string> = {
  ENOENT: "no such file or directory",
  ENOTDIR: "a part of the path is not a directory",
  EISDIR: "it is a directory",
  ENAMETOOLONG: "a name in the path is too long (the limit is 255 bytes)",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  EROFS: "read-only file system",
  ELOOP: "too many symbolic links (or a symbolic link where none is allowed)",
  ENOSPC: "no space left on the device",
  EDQUOT: "disk quota exceeded",
  EEXIST: "it already exists",
  EMFILE: "too many open files",
  EIO: "input/output error",
};

export function fsReason(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  const code = err.code;
  if (code !== undefined && code in REASONS) return REASONS[code] as string;
  return (code ?? err.message ?? String(e)).split("\n")[0] as string;
}
