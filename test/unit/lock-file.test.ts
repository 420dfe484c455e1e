import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, readdir, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { bootId } from "../../src/fs/boot.ts";
import {
  holderState,
  localHost,
  processStart,
  withLockFile,
  type LockRecord,
} from "../../src/fs/lock-file.ts";
import { parseNetrc } from "../../src/netrc/netrc.ts";
import { CliError } from "../../src/errors.ts";

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), "ncl-lock-"));
  dirs.push(d);
  return d;
}

function record(pid: number, extra: Partial<LockRecord> = {}): LockRecord {
  return {
    pid,
    boot: bootId(),
    start: processStart(pid),
    host: localHost(),
    since: new Date().toISOString(),
    command: "nix-cache-login refresh",
    nonce: "00112233aabbccdd",
    ...extra,
  };
}

async function exitedPid(): Promise<number> {
  const child = spawn(process.execPath, ["-e", "0"], { stdio: "ignore" });
  await new Promise((r) => child.on("close", r));
  return child.pid as number;
}

test("a holder is dead when its PID is gone, its boot is another, or its PID started later", async () => {
  assert.equal(holderState(record(process.pid)), "alive");
  assert.equal(holderState(record(await exitedPid())), "dead");
  assert.equal(holderState(record(process.pid, { boot: "another-boot" })), "dead");
  if (process.platform === "linux") assert.equal(holderState(record(process.pid, { start: "1" })), "dead");
  assert.equal(holderState(record(process.pid, { host: "elsewhere.invalid" })), "unknown");
});

test("a lock left by a dead process is taken over at once, and released after use", async () => {
  const dir = await tempDir();
  const lock = join(dir, "netrc.lock");
  await writeFile(lock, JSON.stringify(record(await exitedPid())));
  const notes: string[] = [];
  const got = await withLockFile(lock, async () => "ran", { notify: (l) => notes.push(l) });
  assert.equal(got, "ran");
  assert.deepEqual(notes, []);
  assert.deepEqual(await readdir(dir), [], "no lock, temp or break file is left");
});

test("a break file left empty by a waiter killed before it wrote its PID is freed once seen so for 5 s, not before", async () => {
  const dir = await tempDir();
  const lock = join(dir, "netrc.lock");
  const dead = record(await exitedPid());
  await writeFile(lock, JSON.stringify(dead));
  const breakFile = `${lock}.break-${dead.nonce}`;
  await writeFile(breakFile, "");
  // Just seen: another waiter may be writing its PID right now, so it is its turn; this one waits,
  // and its bound names the break file.
  const gaveUp = await withLockFile(lock, async () => "ran", { maxWaitMs: 300 }).catch((e: Error) => e);
  assert.ok(gaveUp instanceof CliError, String(gaveUp));
  assert.equal(gaveUp.code, "lock_timeout");
  assert.match(gaveUp.message, /which has exited; another waiter is taking it over/);
  assert.equal(gaveUp.hint, `if no other nix-cache-login runs, remove ${breakFile}`);
  assert.ok((await readdir(dir)).includes(`netrc.lock.break-${dead.nonce}`), "the fresh break file stays");
  // Its mtime says nothing (the wall clock may be wrong: here it is an hour ahead); a waiter that
  // has seen it without a PID for 5 s frees it and takes the lock over.
  const future = new Date(Date.now() + 3_600_000);
  await utimes(breakFile, future, future);
  assert.equal(await withLockFile(lock, async () => "ran"), "ran");
  assert.deepEqual(await readdir(dir), [], "no lock, temp or break file is left");
});

test("a live holder is waited for, with a note naming it, until it lets go", async () => {
  const dir = await tempDir();
  const lock = join(dir, "netrc.lock");
  const holder = spawn(process.execPath, ["-e", "setTimeout(() => {}, 60000)"], { stdio: "ignore" });
  try {
    await new Promise((r) => holder.once("spawn", r));
    await writeFile(lock, JSON.stringify(record(holder.pid as number)));
    let resolveNote!: (line: string) => void;
    const note = new Promise<string>((r) => (resolveNote = r));
    const waiting = withLockFile(lock, async () => "ran", { notify: (l) => resolveNote(l) });
    const line = await note;
    assert.match(
      line,
      new RegExp(
        `^waiting for ${lock}: held by nix-cache-login refresh \\(process ${holder.pid}\\) since \\d\\d:\\d\\d:\\d\\d UTC$`,
      ),
    );
    holder.kill("SIGKILL");
    assert.equal(await waiting, "ran");
  } finally {
    holder.kill("SIGKILL");
  }
});

test("parallel waiters on a dead holder's lock: exactly one runs at a time", async () => {
  const dir = await tempDir();
  const lock = join(dir, "state.lock");
  await writeFile(lock, JSON.stringify(record(await exitedPid())));
  let inside = 0;
  let most = 0;
  await Promise.all(
    Array.from({ length: 20 }, () =>
      withLockFile(lock, async () => {
        inside++;
        most = Math.max(most, inside);
        await new Promise((r) => setImmediate(r));
        inside--;
      }),
    ),
  );
  assert.equal(most, 1);
});

test("netrc line numbers are right deep into a big file (counted as the parser goes)", () => {
  const lines = Array.from({ length: 5000 }, (_, i) => `machine h${i} login u password p${i}`);
  lines.splice(2500, 0, "", "# a comment", "machine multi", "  login x", "  password y");
  const netrc = parseNetrc(`${lines.join("\n")}\n`);
  const multi = netrc.entries.find((e) => e.machine === "multi");
  assert.equal(multi?.line, 2503);
  assert.equal(netrc.entries.at(-1)?.line, lines.length);
  assert.equal(netrc.entries[0]?.line, 1);
});
