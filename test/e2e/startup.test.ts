// The entry's V8 code cache (src/loader.cjs): written after a successful run, 0600 in a 0700
// directory under the user's own XDG_CACHE_HOME, per build; anything it cannot trust is ignored
// and replaced; never written after a failure or with NODE_DISABLE_COMPILE_CACHE.
import assert from "node:assert/strict";
import { chmod, lstat, mkdir, readdir, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, test } from "node:test";
import { makeWorkspace, runCli, type Workspace } from "../support/cli.ts";

const workspaces: Workspace[] = [];
after(async () => {
  for (const ws of workspaces) await ws.cleanup();
});

async function workspace(): Promise<{ ws: Workspace; dir: string }> {
  const ws = await makeWorkspace();
  workspaces.push(ws);
  return { ws, dir: join(ws.env.XDG_CACHE_HOME as string, "nix-cache-login", "code-cache") };
}

const mode = async (p: string) => (await stat(p)).mode & 0o777;

test("a successful run leaves a private cache; the next run uses it and prints the same", async () => {
  const { ws, dir } = await workspace();
  const first = await runCli(ws, ["--help"]);
  assert.equal(first.code, 0);
  const files = await readdir(dir);
  assert.equal(files.length, 1, files.join(", "));
  const [file] = files as [string];
  assert.match(file, new RegExp(`^[0-9a-f]{16}-${process.version}-${process.arch}-none_help\\.bin$`));
  assert.equal(await mode(dir), 0o700);
  assert.equal(await mode(join(dir, file)), 0o600);
  const before = await readFile(join(dir, file));
  const second = await runCli(ws, ["--help"]);
  assert.deepEqual([second.code, second.stdout, second.stderr], [0, first.stdout, first.stderr]);
  assert.deepEqual(await readFile(join(dir, file)), before, "an accepted cache is not rewritten");
  // Each kind of command line has its own: the command and its options, not their values.
  assert.equal((await runCli(ws, ["status", "--help", "--config=/nonexistent"])).code, 0);
  assert.equal((await runCli(ws, ["-c", "/elsewhere", "status", "-h"])).code, 0);
  const prefix = `${file.slice(0, 16)}-${process.version}-${process.arch}-`;
  assert.deepEqual((await readdir(dir)).sort(), [
    `${prefix}none_help.bin`,
    `${prefix}status_c_h.bin`,
    `${prefix}status_config_help.bin`,
  ]);
});

test("a corrupt cache is rejected and replaced", async () => {
  const { ws, dir } = await workspace();
  const reference = await runCli(ws, ["--help"]);
  const [file] = (await readdir(dir)) as [string];
  const path = join(dir, file);
  await writeFile(path, Buffer.alloc(4096, 0x5a));
  const r = await runCli(ws, ["--help"]);
  assert.deepEqual([r.code, r.stdout, r.stderr], [0, reference.stdout, reference.stderr]);
  assert.notDeepEqual(await readFile(path), Buffer.alloc(4096, 0x5a));
});

test("a cache that others could have written is not loaded, even a valid one, and is replaced", async () => {
  const { ws, dir } = await workspace();
  const reference = await runCli(ws, ["--help"]);
  const [file] = (await readdir(dir)) as [string];
  const path = join(dir, file);
  // Valid content: loaded, it would be used and left as it is, mode and all.
  await chmod(path, 0o664);
  const r = await runCli(ws, ["--help"]);
  assert.deepEqual([r.code, r.stdout, r.stderr], [0, reference.stdout, reference.stderr]);
  assert.equal(await mode(path), 0o600, "rewritten by this run");
});

test("a symlink in place of the cache is not followed, and is replaced", async () => {
  const { ws, dir } = await workspace();
  const reference = await runCli(ws, ["--help"]);
  const [file] = (await readdir(dir)) as [string];
  const path = join(dir, file);
  // A valid cache behind the link: followed, it would be used and the link left in place.
  const target = join(ws.dir, "elsewhere.bin");
  await writeFile(target, await readFile(path), { mode: 0o600 });
  await rm(path);
  await symlink(target, path);
  const r = await runCli(ws, ["--help"]);
  assert.deepEqual([r.code, r.stdout, r.stderr], [0, reference.stdout, reference.stderr]);
  assert.ok((await lstat(path)).isFile(), "not followed: a regular file was written in its place");
});

test("caches of other builds are removed when a new one is written", async () => {
  const { ws, dir } = await workspace();
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const stale = join(dir, `0000000000000000-${process.version}-${process.arch}-default.bin`);
  await writeFile(stale, "old", { mode: 0o600 });
  assert.equal((await runCli(ws, ["--help"])).code, 0);
  const files = await readdir(dir);
  assert.equal(files.length, 1);
  assert.ok(!files.some((f) => f.startsWith("0000000000000000-")), files.join(", "));
});

test("no cache after a failed run, or with NODE_DISABLE_COMPILE_CACHE", async () => {
  const { ws } = await workspace();
  const failed = await runCli(ws, ["status"]);
  assert.equal(failed.code, 2, failed.stderr);
  const disabled = await runCli(ws, ["--help"], { env: { NODE_DISABLE_COMPILE_CACHE: "1" } });
  assert.equal(disabled.code, 0);
  await assert.rejects(stat(join(ws.env.XDG_CACHE_HOME as string, "nix-cache-login")), { code: "ENOENT" });
  assert.ok(!(await readdir(ws.dir, { recursive: true })).some((f) => f.includes("code-cache")), "nowhere");
});
