import { closeSync, constants, fstatSync, openSync, readSync, type Stats } from "node:fs";

/**
 * Reads a file whose path was judged already, judging it once more by what was opened: `check`
 * gets its fstat and throws to refuse it before anything is read. Opened without blocking (opening
 * a FIFO to read waits for a writer: forever, for a timer's run), so that a FIFO or device gets
 * to `check`. With `noFollow`, a symbolic link in the last place fails (ELOOP) instead of being
 * followed. At most the size that fstat gave is read: a file that grows meanwhile cannot make the
 * read unbounded.
 */
export function readOpened(path: string, o: { noFollow: boolean; check: (st: Stats) => void }): string {
  const flags = constants.O_RDONLY | constants.O_NONBLOCK | (o.noFollow ? constants.O_NOFOLLOW : 0);
  const fd = openSync(path, flags);
  try {
    const st = fstatSync(fd);
    o.check(st);
    const buf = Buffer.alloc(st.size);
    let done = 0;
    while (done < buf.length) {
      const n = readSync(fd, buf, done, buf.length - done, done);
      if (n === 0) break;
      done += n;
    }
    return buf.toString("utf8", 0, done);
  } finally {
    closeSync(fd);
  }
}
