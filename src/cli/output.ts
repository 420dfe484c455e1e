/**
 * stdout and stderr as plain file descriptors. Node's process.stdout is a stream whose set-up costs
 * about as much start-up time as everything `status` does, and a CLI's few lines need none of it:
 * writeSync writes them in order, before the process exits. A non-blocking descriptor (EAGAIN) is
 * handed to the stream from then on. A closed pipe (`| head`) ends the command quietly: the first
 * write to it throws OutputClosed, which run() turns into exit 0, and later writes are dropped.
 */
import { fstatSync, writeSync } from "node:fs";

export interface Output {
  write(text: string): void;
  readonly isTTY: boolean;
}

/** The reader of stdout or stderr went away: nobody wants the rest of the output. */
export class OutputClosed extends Error {
  constructor(fd: number) {
    super(`output ${fd} closed`);
    this.name = "OutputClosed";
  }
}

export function fdOutput(fd: 1 | 2): Output {
  let stream: NodeJS.WriteStream | undefined;
  let tty: boolean | undefined;
  let closed = false;
  const toStream = (rest: Buffer) => {
    if (stream === undefined) {
      stream = fd === 1 ? process.stdout : process.stderr;
      // Asynchronous, outside the command: the writes from then on are dropped.
      stream.on("error", (e: NodeJS.ErrnoException) => {
        if (e.code !== "EPIPE") throw e;
        closed = true;
      });
    }
    stream.write(rest);
  };
  return {
    write(text) {
      if (closed) return;
      if (stream !== undefined) {
        stream.write(text);
        return;
      }
      const bytes = Buffer.from(text, "utf8");
      let done = 0;
      try {
        while (done < bytes.length) done += writeSync(fd, bytes, done);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === "EPIPE") {
          closed = true;
          throw new OutputClosed(fd);
        }
        if (code !== "EAGAIN") throw e;
        toStream(bytes.subarray(done));
      }
    },
    get isTTY() {
      tty ??= isTerminal(fd);
      return tty;
    },
  };
}

/**
 * isatty(fd), asked only of a character device: a terminal is always one, and loading node:tty
 * (which loads node:net and node:stream) costs a timer's `refresh` (stderr a pipe or the journal's
 * socket) more start-up time than all of its own work.
 */
function isTerminal(fd: number): boolean {
  try {
    if (!fstatSync(fd).isCharacterDevice()) return false;
  } catch {
    return false;
  }
  return process.getBuiltinModule("node:tty").isatty(fd);
}
