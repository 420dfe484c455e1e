import { closeSync, constants, fstatSync, openSync, readSync, type Stats } from "node:fs";

export interface ReadOpenedOptions {
  /** A symbolic link in the last place fails (ELOOP) instead of being followed. */
  noFollow: boolean;
  /** Gets the fstat of what was opened, and throws to refuse it before anything is read. */
  check: (st: Stats) => void;
  /** The most that is read; a file with more is refused by `tooLarge`. */
  maxBytes: number;
  /** The error for a file over maxBytes: its size, when fstat gave one over the limit. */
  tooLarge: (size: number | undefined) => Error;
}

/**
 * Reads a file whose path was judged already, judging it once more by what was opened. Opened
 * without blocking (opening a FIFO to read waits for a writer: forever, for a timer's run), so
 * that a FIFO or device gets to `check`; a directory fails as a read of one does (EISDIR). Read to
 * its end, never past maxBytes: fstat's size is not trusted for that (a FUSE or proc file says 0).
 */
export function readOpened(path: string, o: ReadOpenedOptions): string {
  const flags = constants.O_RDONLY | constants.O_NONBLOCK | (o.noFollow ? constants.O_NOFOLLOW : 0);
  const fd = openSync(path, flags);
  try {
    const st = fstatSync(fd);
    o.check(st);
    if (st.isDirectory())
      throw Object.assign(new Error(`EISDIR: is a directory: ${path}`), { code: "EISDIR" });
    if (st.size > o.maxBytes) throw o.tooLarge(st.size);
    let chunk = Buffer.alloc(Math.min(o.maxBytes + 1, Math.max(st.size + 1, 4096)));
    let done = 0;
    for (;;) {
      if (done === chunk.length) {
        if (done > o.maxBytes) throw o.tooLarge(undefined);
        const bigger = Buffer.alloc(Math.min(o.maxBytes + 1, chunk.length * 2));
        chunk.copy(bigger, 0, 0, done);
        chunk = bigger;
      }
      const n = readSync(fd, chunk, done, chunk.length - done, null);
      if (n === 0) break;
      done += n;
    }
    if (done > o.maxBytes) throw o.tooLarge(undefined);
    return chunk.toString("utf8", 0, done);
  } finally {
    closeSync(fd);
  }
}
