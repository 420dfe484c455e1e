// fs/read-opened.ts: what a file says of its size (fstat) is not what bounds the read.
import assert from "node:assert/strict";
import { statSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { readOpened, type ReadOpenedOptions } from "../../src/fs/read-opened.ts";

const dir = await mkdtemp(join(tmpdir(), "ncl-read-opened-"));
after(() => rm(dir, { recursive: true, force: true }));

class TooLarge extends Error {
  constructor(readonly size: number | undefined) {
    super(`too large: ${size}`);
  }
}

const opts = (maxBytes: number): ReadOpenedOptions => ({
  noFollow: true,
  check: () => undefined,
  maxBytes,
  tooLarge: (size) => new TooLarge(size),
});

test("a file whose fstat size is 0 (procfs, FUSE with direct_io) is read to its end", () => {
  // /proc files report size 0 and hold text: a read bounded by fstat's size read nothing.
  assert.equal(statSync("/proc/self/status").size, 0);
  assert.match(readOpened("/proc/self/status", opts(1 << 20)), /^Name:/m);
  // Longer than the first buffer: it grows until the end.
  const maps = readOpened("/proc/self/maps", opts(1 << 20));
  assert.ok(maps.length > 4096, `${maps.length} bytes`);
  assert.match(maps.trimEnd().split("\n").pop() ?? "", /^[0-9a-f]+-[0-9a-f]+ /);
});

test("more than maxBytes is refused, whatever fstat says: by its size, or by what was read", async () => {
  const file = join(dir, "big");
  await writeFile(file, "x".repeat(100));
  assert.throws(
    () => readOpened(file, opts(99)),
    (e: unknown) => e instanceof TooLarge && e.size === 100,
  );
  assert.equal(readOpened(file, opts(100)), "x".repeat(100));
  // A file that says 0 bytes and holds more than maxBytes.
  assert.throws(
    () => readOpened("/proc/self/status", opts(10)),
    (e: unknown) => e instanceof TooLarge && e.size === undefined,
  );
});

test("a directory fails as a read of one does (EISDIR), after check", () => {
  const seen: string[] = [];
  assert.throws(
    () =>
      readOpened(dir, { ...opts(1 << 20), check: (st) => void seen.push(st.isDirectory() ? "dir" : "?") }),
    { code: "EISDIR" },
  );
  assert.deepEqual(seen, ["dir"]);
});
