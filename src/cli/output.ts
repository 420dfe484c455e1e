/**
 * stdout and stderr as plain file descriptors. Node's process.stdout is a stream whose set-up costs
 * about as much start-up time as everything `status` does, and a CLI's few lines need none of it:
 * writeSync writes them in order, before the process exits. A non-blocking descriptor (EAGAIN) is
 * handed to the stream from then on; a closed pipe (`| head`) ends the process quietly.
 */
import { writeSync } from "node:fs";

export interface Output {
  write(text: string): void;
  readonly isTTY: boolean;
}

export function fdOutput(fd: 1 | 2): Output {
  let stream: NodeJS.WriteStream | undefined;
  let tty: boolean | undefined;
  const toStream = (rest: Buffer) => {
    if (stream === undefined) {
      stream = fd === 1 ? process.stdout : process.stderr;
      stream.on("error", (e: NodeJS.ErrnoException) => {
        if (e.code === "EPIPE") process.exit(process.exitCode ?? 0);
        throw e;
      });
    }
    stream.write(rest);
  };
  return {
    write(text) {
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
        if (code === "EPIPE") process.exit(process.exitCode ?? 0);
        if (code !== "EAGAIN") throw e;
        toStream(bytes.subarray(done));
      }
    },
    get isTTY() {
      tty ??= process.getBuiltinModule("node:tty").isatty(fd);
      return tty;
    },
  };
}
