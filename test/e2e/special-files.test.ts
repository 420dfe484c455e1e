/**
 * A FIFO (or any file that is not a regular file) where the tool reads one of its files: the
 * state, its lock, a client secret. Opening a FIFO to read waits for a writer, so a reader that
 * does not open without blocking hangs forever. The built CLI runs as a subprocess, killed after a
 * generous bound: that bound keeps a hang from hanging the test runner, it is no timing assertion.
 */
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdir, readdir, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { bootId } from "../../src/fs/boot.ts";
import { localHost, processStart } from "../../src/fs/lock-file.ts";
import { MAX_STATE_BYTES, StateStore, stateFileName } from "../../src/store/state.ts";
import { writeState } from "../../src/store/write.ts";
import { makeWorkspace, runCli, snapshot, type RunResult, type Workspace } from "../support/cli.ts";

const ISSUER = "http://127.0.0.1:9/realms/nix";
const HOST = "cache.example.org";
/** Far longer than any of these commands takes; only a hang reaches it. */
const BOUND_MS = 30_000;

const workspaces: Workspace[] = [];
after(async () => {
  for (const ws of workspaces) await ws.cleanup();
});

async function workspace(config: Record<string, unknown>): Promise<Workspace> {
  const ws = await makeWorkspace(config);
  workspaces.push(ws);
  await mkdir(ws.stateDir, { recursive: true, mode: 0o700 });
  return ws;
}

function mkfifo(path: string): void {
  execFileSync("mkfifo", ["-m", "600", path]);
}

function errorOf(r: RunResult): { code: string; hint: string | null; exit_code: number } {
  assert.equal(r.signal, null, `killed after ${BOUND_MS} ms: it hung (stderr: ${r.stderr})`);
  const line = r.stdout.split("\n")[0] ?? "";
  return (JSON.parse(line) as { error: { code: string; hint: string | null; exit_code: number } }).error;
}

describe("a FIFO is refused at once, never read", () => {
  test("as the token state: status and refresh fail with state_not_regular_file", async () => {
    const ws = await workspace({ issuer: ISSUER, client_id: "nix-cache", cache_host: HOST });
    mkfifo(join(ws.stateDir, stateFileName(ISSUER, "nix-cache")));
    const before = await snapshot(ws.dir);
    for (const command of ["status", "refresh"]) {
      const r = await runCli(ws, [command, "--json"], { timeoutMs: BOUND_MS });
      const e = errorOf(r);
      assert.equal(e.code, "state_not_regular_file", r.stdout);
      assert.equal(r.code, 1);
      assert.equal(e.exit_code, 1);
      assert.match(r.stderr, /^error: .*: token state is not a regular file/m);
      assert.deepEqual(await snapshot(ws.dir), before);
    }
  });

  test("as the state's lock: logout fails with lock_not_regular_file", async () => {
    const ws = await workspace({ issuer: ISSUER, client_id: "nix-cache", cache_host: HOST });
    mkfifo(join(ws.stateDir, `${stateFileName(ISSUER, "nix-cache")}.lock`));
    const before = await snapshot(ws.dir);
    const r = await runCli(ws, ["logout", "--json"], { timeoutMs: BOUND_MS });
    const e = errorOf(r);
    assert.equal(e.code, "lock_not_regular_file", r.stdout);
    assert.equal(r.code, 1);
    assert.match(String(e.hint), /rm /);
    assert.deepEqual(await snapshot(ws.dir), before);
  });

  test("as a dead holder's break file: the waiter removes it and takes the lock over", async () => {
    const ws = await workspace({ issuer: ISSUER, client_id: "nix-cache", cache_host: HOST });
    const store = new StateStore(ws.stateDir, ISSUER, "nix-cache");
    await writeState(store, { ...store.empty("user"), refresh_token: "a-refresh-token-value" });
    ws.secrets.add("a-refresh-token-value");
    // The lock of a holder that died, and where a waiter that took it over would have noted itself.
    const exited = spawn(process.execPath, ["-e", "0"], { stdio: "ignore" });
    await new Promise((r) => exited.on("close", r));
    const nonce = "00112233aabbccdd";
    const lock = `${store.file}.lock`;
    await writeFile(
      lock,
      JSON.stringify({
        pid: exited.pid,
        boot: bootId(),
        start: processStart(exited.pid as number),
        host: localHost(),
        since: new Date().toISOString(),
        command: "nix-cache-login refresh",
        nonce,
      }),
    );
    mkfifo(`${lock}.break-${nonce}`);
    const r = await runCli(ws, ["refresh", "--json"], { timeoutMs: BOUND_MS });
    const e = errorOf(r);
    // Past the lock: the grant is sent, to a port where nothing listens.
    assert.match(r.stderr, /^error: cannot reach 127\.0\.0\.1:9/m);
    assert.equal(r.code, 1, e.code);
    assert.deepEqual(
      (await readdir(ws.stateDir)).filter((f) => f.includes(".lock")),
      [],
      "the break FIFO and the dead lock are gone",
    );
  });

  test("as client_secret_file: service-account fails with credential_file_not_regular_file", async () => {
    const ws = await workspace({ issuer: ISSUER, client_id: "svc", cache_host: HOST });
    const secret = join(ws.dir, "secret");
    mkfifo(secret);
    await ws.writeConfig({ issuer: ISSUER, client_id: "svc", cache_host: HOST, client_secret_file: secret });
    const before = await snapshot(ws.dir);
    const r = await runCli(ws, ["service-account", "--json"], { timeoutMs: BOUND_MS });
    const e = errorOf(r);
    assert.equal(e.code, "credential_file_not_regular_file", r.stdout);
    assert.equal(r.code, 2);
    assert.deepEqual(await snapshot(ws.dir), before);
  });
});

describe("a file far larger than one of ours is refused before it is read", () => {
  test("as the token state (over 1 MiB): status fails with state_too_large, naming its size", async () => {
    const ws = await workspace({ issuer: ISSUER, client_id: "nix-cache", cache_host: HOST });
    const file = join(ws.stateDir, stateFileName(ISSUER, "nix-cache"));
    await writeFile(file, "", { mode: 0o600 });
    await truncate(file, MAX_STATE_BYTES + 1);
    const before = await snapshot(ws.dir);
    const r = await runCli(ws, ["status", "--json"], { timeoutMs: BOUND_MS });
    const e = errorOf(r);
    assert.equal(e.code, "state_too_large", r.stdout);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      new RegExp(
        `^error: .*: token state is corrupt: ${MAX_STATE_BYTES + 1} bytes, and a state file is at most`,
        "m",
      ),
    );
    assert.match(r.stderr, /^hint: run `nix-cache-login login` \(it moves the file aside/m);
    assert.deepEqual(await snapshot(ws.dir), before);
  });

  test("as client_secret_file (over 64 KiB): service-account fails with credential_file_too_large", async () => {
    const ws = await workspace({ issuer: ISSUER, client_id: "svc", cache_host: HOST });
    const secret = join(ws.dir, "secret");
    await writeFile(secret, "s".repeat(64 * 1024 + 1), { mode: 0o600 });
    await ws.writeConfig({ issuer: ISSUER, client_id: "svc", cache_host: HOST, client_secret_file: secret });
    const before = await snapshot(ws.dir);
    const r = await runCli(ws, ["service-account", "--json"], { timeoutMs: BOUND_MS });
    const e = errorOf(r);
    assert.equal(e.code, "credential_file_too_large", r.stdout);
    assert.equal(r.code, 2);
    assert.match(
      r.stderr,
      /^error: client_secret_file .*secret: 65537 bytes; a secret or key file is at most/m,
    );
    assert.deepEqual(await snapshot(ws.dir), before);
  });
});
