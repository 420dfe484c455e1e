/**
 * Issue 13: crashes, full disks, unwritable paths, lost answers. The built CLI against the
 * Keycloak-shaped realm, with faults injected at the realm (a held or replaced answer), SIGKILL at
 * a chosen point (while the realm holds the answer), read-only bind mounts, a small tmpfs and
 * setpriv. Needs root (mount); CI runs as root.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import {
  chmod,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rmdir,
  stat,
  symlink,
  utimes,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { execFile } from "node:child_process";
import { createWhole } from "../../src/fs/lock-file.ts";
import { StateStore } from "../../src/store/state.ts";
import { realmServiceWorkspace, realmUserWorkspace, seedSession } from "../support/realm-workspaces.ts";
import { CLI, netrcPassword, runCli, type RunResult, type Workspace } from "../support/cli.ts";
import { startRealm, type Realm } from "../support/realm.ts";

const run = promisify(execFile);
const HOST = "127.0.0.1";
let realm: Realm;
const workspaces: Workspace[] = [];
const mounts: string[] = [];

before(async () => {
  if (process.getuid?.() !== 0) throw new Error("these tests mount file systems: run them as root");
  realm = await startRealm({ tls: false, accessTokenTTL: 300, refreshTokenTTL: 3600, deviceInterval: 1 });
});

after(async () => {
  realm.fault = undefined;
  // Unmount in reverse order, even when a test failed half-way.
  for (const m of mounts.reverse()) await run("umount", ["-l", m]).catch(() => undefined);
  await realm.stop();
  for (const ws of workspaces) await ws.cleanup();
});

async function userWorkspace(extra: Record<string, unknown> = {}): Promise<Workspace> {
  const ws = await realmUserWorkspace(realm, HOST, extra);
  workspaces.push(ws);
  return ws;
}

async function serviceWorkspace(extra: Record<string, unknown> = {}): Promise<Workspace> {
  const ws = await realmServiceWorkspace(realm, HOST, { extra });
  workspaces.push(ws);
  return ws;
}

function store(ws: Workspace, clientId: string = realm.publicClientId): StateStore {
  return new StateStore(ws.stateDir, realm.issuer, clientId);
}

const signIn = (ws: Workspace): Promise<string> => seedSession(ws, realm);

async function readState(ws: Workspace): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(store(ws).file, "utf8")) as Record<string, unknown>;
}

/** Resolves when `re` shows up on the child's stderr; rejects if the child ends first. */
function stderrMatch(child: ChildProcess, re: RegExp): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let seen = "";
    child.stderr?.on("data", (d: Buffer | string) => {
      seen += String(d);
      const m = re.exec(seen);
      if (m) resolve(m);
    });
    child.on("close", () => reject(new Error(`the process ended without printing ${re}; stderr: ${seen}`)));
  });
}

/** A token request held at the realm until `release` is called; `arrived` resolves when it came. */
function holdTokenRequests(): { arrived: Promise<void>; release: () => void } {
  let arrived!: () => void;
  let release!: () => void;
  const arrivedP = new Promise<void>((r) => (arrived = r));
  const until = new Promise<void>((r) => (release = r));
  realm.fault = (req) => {
    if (req.method !== "POST" || !req.path.endsWith("/token")) return "pass";
    arrived();
    return { kind: "hold", until };
  };
  return { arrived: arrivedP, release };
}

/** Mounts `dir` on itself read-only; unmounted in `after`. */
async function readOnlyBind(dir: string): Promise<void> {
  await run("mount", ["--bind", dir, dir]);
  mounts.push(dir);
  await run("mount", ["-o", "remount,bind,ro", dir]);
}

/** Like runCli, with a command in front of node (setpriv). */
function runWrapped(ws: Workspace, wrapper: string[], args: string[]): Promise<RunResult> {
  const [cmd, ...rest] = wrapper;
  const child = spawn(cmd as string, [...rest, process.execPath, CLI, ...args], {
    env: ws.env,
    cwd: ws.dir,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  return new Promise((resolve) =>
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    }),
  );
}

/** A PID that is certainly not running any more (its process has been reaped). */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ["-e", "0"], { stdio: "ignore" });
  const pid = child.pid as number;
  await new Promise((r) => child.on("close", r));
  return pid;
}

describe("the lock (item 1)", () => {
  test("a SIGKILLed lock holder frees the lock: the next run proceeds at once", async () => {
    const ws = await userWorkspace();
    await signIn(ws);
    const held = holdTokenRequests();
    let killed!: ChildProcess;
    const victim = runCli(ws, ["refresh"], { onSpawn: (c) => (killed = c) });
    await held.arrived;
    const lockPath = `${store(ws).file}.lock`;
    // The holder is killed while it waits for the provider's answer, holding the state lock.
    killed.kill("SIGKILL");
    assert.equal((await victim).signal, "SIGKILL");
    realm.fault = undefined;
    // The lock it left looks fresh for an hour: only its dead holder can tell it is free.
    const future = new Date(Date.now() + 3600_000);
    // (utimes fails if the killed holder left no lock: then this test would prove nothing.)
    await utimes(lockPath, future, future);
    assert.equal(
      (JSON.parse(await readFile(lockPath, "utf8")) as { pid: unknown }).pid,
      killed.pid,
      "the lock names the killed holder",
    );
    realm.clearRequests();
    const r = await runCli(ws, ["refresh"]);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /waiting for/);
    assert.equal(realm.countRequests("/token"), 1);
    await assert.rejects(stat(lockPath), "the lock is released");
  });

  test("waiting for a live holder says who holds the lock and since when", async () => {
    const ws = await userWorkspace();
    await signIn(ws);
    realm.clearRequests();
    const held = holdTokenRequests();
    let holderChild!: ChildProcess;
    const holder = runCli(ws, ["refresh"], { onSpawn: (c) => (holderChild = c) });
    await held.arrived;
    let waiterChild!: ChildProcess;
    const waiter = runCli(ws, ["refresh"], { onSpawn: (c) => (waiterChild = c) });
    const note = await stderrMatch(
      waiterChild,
      /^note: waiting for (\S+): held by nix-cache-login refresh \(process (\d+)\) since (\d\d:\d\d:\d\d) UTC$/m,
    ).finally(() => held.release());
    assert.equal(note[1], `${store(ws).file}.lock`);
    assert.equal(Number(note[2]), holderChild.pid);
    const [h, w] = await Promise.all([holder, waiter]);
    realm.fault = undefined;
    assert.equal(h.code, 0, h.stderr);
    assert.equal(w.code, 0, w.stderr);
    // The waiter took the lock after the holder's renewal and used its token.
    assert.equal(realm.countRequests("/token"), 1, "one refresh for the two runs");
  });
});

describe("unwritable netrc locations fail at once, naming the cause (item 2)", () => {
  test("a read-only mount", async () => {
    const dir = join((await serviceWorkspace()).dir, "ro");
    const ws = workspaces.at(-1) as Workspace;
    await mkdir(dir, { recursive: true });
    await readOnlyBind(dir);
    await ws.writeConfig((await readFile(ws.configPath, "utf8")) + `netrc_path = "${join(dir, "netrc")}"\n`);
    const r = await runCli(ws, ["service-account"]);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(
      r.stderr.split("\n")[0],
      `error: ${join(dir, "netrc.lock")}: cannot create the lock file: read-only file system (EROFS)`,
    );
    assert.match(r.stderr, new RegExp(`^hint: .*read-only.*netrc_path in ${ws.configPath}`, "m"));
    assert.doesNotMatch(r.stderr, /stuck/);
  });

  test("permission denied (root without CAP_DAC_OVERRIDE, via setpriv)", async () => {
    const ws = await serviceWorkspace();
    const dir = join(ws.dir, "locked");
    await mkdir(dir, { mode: 0o500 });
    await chmod(dir, 0o500);
    await ws.writeConfig((await readFile(ws.configPath, "utf8")) + `netrc_path = "${join(dir, "netrc")}"\n`);
    const r = await runWrapped(
      ws,
      [
        "setpriv",
        "--inh-caps=-dac_override,-dac_read_search",
        "--bounding-set=-dac_override,-dac_read_search",
      ],
      ["service-account"],
    );
    assert.equal(r.code, 1, r.stderr);
    assert.equal(
      r.stderr.split("\n")[0],
      `error: ${join(dir, "netrc.lock")}: cannot create the lock file: permission denied (EACCES)`,
    );
    assert.match(
      r.stderr,
      new RegExp(`^hint: check the owner and permissions .*netrc_path in ${ws.configPath}`, "m"),
    );
  });

  test("a netrc symlinked into a read-only mount (Home Manager)", async () => {
    const ws = await serviceWorkspace();
    const store = join(ws.dir, "store");
    await mkdir(store);
    await writeFile(join(store, "netrc"), "machine other login a password b\n");
    await readOnlyBind(store);
    await mkdir(dirname(ws.netrcPath), { recursive: true });
    await symlink(join(store, "netrc"), ws.netrcPath);
    const r = await runCli(ws, ["service-account"]);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(
      r.stderr.split("\n")[0],
      `error: ${join(store, "netrc.lock")}: cannot create the lock file: read-only file system (EROFS)`,
    );
    assert.match(
      r.stderr,
      new RegExp(
        `^hint: .*netrc_path in ${ws.configPath}: ${ws.netrcPath} is a symlink to ${join(store, "netrc")}`,
        "m",
      ),
    );
  });
});

describe("directories are created one level at a time (item 3)", () => {
  test("netrc_path = /proc/nope/netrc fails at once instead of spinning", async () => {
    const ws = await serviceWorkspace({ netrc_path: "/proc/nope/netrc" });
    const r = await runCli(ws, ["service-account"]);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(
      r.stderr.split("\n")[0],
      `error: netrc_path in ${ws.configPath}: cannot create directory /proc/nope: no such file or directory (ENOENT)`,
    );
  });

  test("a dangling symlink in netrc_path's parents is named, with netrc_path", async () => {
    const ws = await serviceWorkspace();
    const link = join(ws.home, "dotfiles");
    await symlink(join(ws.dir, "gone"), link);
    await ws.writeConfig(
      (await readFile(ws.configPath, "utf8")) + `netrc_path = "${join(link, "nix", "netrc")}"\n`,
    );
    const r = await runCli(ws, ["service-account"]);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(
      r.stderr.split("\n")[0],
      `error: netrc_path in ${ws.configPath}: ${link} is a symlink to ${join(ws.dir, "gone")}, which does not exist`,
    );
  });
});

describe("refresh keeps the session through failures (items 4, 5, 9)", () => {
  test("an oversized access token is refused, but the rotated refresh token is kept", async () => {
    const ws = await userWorkspace();
    await signIn(ws);
    const before = (await readState(ws)).refresh_token;
    realm.fault = (req) =>
      req.method === "POST" && req.path.endsWith("/token")
        ? {
            kind: "replace",
            edit: ({ status, body }) => {
              const json = JSON.parse(body) as Record<string, unknown>;
              ws.secrets.add(json.refresh_token as string);
              return { status, body: JSON.stringify({ ...json, access_token: "x".repeat(5000) }) };
            },
          }
        : "pass";
    const r = await runCli(ws, ["refresh"]);
    realm.fault = undefined;
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^error: the access token for 127\.0\.0\.1 is 5000 bytes/m);
    assert.notEqual((await readState(ws)).refresh_token, before, "the rotated refresh token was saved");
    await assert.rejects(stat(ws.netrcPath), "no netrc was written");
    const again = await runCli(ws, ["refresh"]);
    assert.equal(again.code, 0, `the session survived: ${again.stderr}`);
  });

  const answers: [number, Record<string, string>][] = [
    [502, { "content-type": "text/html" }],
    [503, { "content-type": "text/html" }],
    [307, { location: "/elsewhere" }],
  ];
  for (const [status, headers] of answers) {
    test(`a ${status} answer to the refresh grant is not answered by sending the grant again`, async () => {
      const ws = await userWorkspace();
      await signIn(ws);
      assert.equal((await runCli(ws, ["refresh"])).code, 0, "caches the discovery document");
      realm.clearRequests();
      realm.fault = (req) =>
        req.method === "POST" && req.path.endsWith("/token")
          ? { kind: "respond", status, headers, body: status === 307 ? "" : "<html>bad gateway</html>" }
          : "pass";
      const r = await runCli(ws, ["refresh"]);
      realm.fault = undefined;
      assert.equal(r.code, 1, r.stderr);
      assert.equal(realm.countRequests("/token"), 1, "the grant was sent once");
      const again = await runCli(ws, ["refresh"]);
      assert.equal(again.code, 0, `the session survived: ${again.stderr}`);
    });
  }

  test("after invalid_grant, status, status --json and doctor report the ended session and name login", async () => {
    const ws = await userWorkspace();
    await signIn(ws);
    assert.equal((await runCli(ws, ["refresh"])).code, 0);
    const netrcBefore = await readFile(ws.netrcPath, "utf8");
    await realm.revokeAllSessions();
    const startedAt = Date.now();
    const r = await runCli(ws, ["refresh"]);
    const endedAt = Date.now();
    assert.equal(r.code, 3, r.stderr);
    assert.equal(await readFile(ws.netrcPath, "utf8"), netrcBefore, "the netrc is unchanged");
    const ended = (await readState(ws)).session_ended as { at: string; description: string | null };
    // Noted by that run: between its start and its end, however long it took.
    const at = Date.parse(ended.at);
    assert.ok(at >= startedAt && at <= endedAt, `${ended.at} within the refresh run`);
    assert.equal(typeof ended.description, "string");

    const text = await runCli(ws, ["status"]);
    assert.match(
      text.stdout,
      /^refresh token: +the provider ended the session at \S+ \(.+\); run `nix-cache-login login`$/m,
    );
    assert.match(text.stderr, /^hint: run `nix-cache-login login`$/m);
    const json = await runCli(ws, ["status", "--json"]);
    const j = JSON.parse(json.stdout) as {
      refresh_token: { valid: boolean; session_ended: { at: string; description: string } | null };
    };
    assert.equal(j.refresh_token.valid, false);
    assert.equal(j.refresh_token.session_ended?.at, ended.at);
    const doctor = await runCli(ws, ["doctor", "--json"]);
    const checks = (
      JSON.parse(doctor.stdout) as {
        checks: { id: string; status: string; summary: string; fix?: string[] }[];
      }
    ).checks;
    const token = checks.find((c) => c.id === "token");
    assert.equal(token?.status, "problem", JSON.stringify(token));
    assert.match(token?.summary ?? "", /the provider ended the session at/);
    assert.match(JSON.stringify(token?.fix), /nix-cache-login login/);
    // A second refresh does not send the dead token again.
    realm.clearRequests();
    const again = await runCli(ws, ["refresh"]);
    assert.equal(again.code, 3);
    assert.equal(realm.countRequests("/token"), 0);
  });
});

/** Fills the file system under dir to the last block. */
async function fill(dir: string): Promise<string> {
  const filler = join(dir, "filler");
  await writeFile(filler, Buffer.alloc(0));
  for (let size = 64 * 1024; size >= 1; size = Math.floor(size / 2)) {
    for (;;) {
      try {
        await writeFile(filler, Buffer.alloc(size), { flag: "a" });
      } catch {
        break;
      }
    }
  }
  return filler;
}

describe("a full disk under the state directory (item 6)", () => {
  /** A workspace whose XDG_STATE_HOME is a small tmpfs (unmounted in `after`). */
  async function smallStateDisk(): Promise<Workspace> {
    const ws = await userWorkspace();
    const stateHome = ws.env.XDG_STATE_HOME as string;
    await mkdir(stateHome, { recursive: true });
    await run("mount", ["-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", stateHome]);
    mounts.push(stateHome);
    return ws;
  }

  test("a disk that fills while the grant is under way: the rotated token is still saved", async () => {
    const ws = await smallStateDisk();
    await signIn(ws);
    assert.equal((await runCli(ws, ["refresh"])).code, 0);
    const before = (await readState(ws)).refresh_token;
    const held = holdTokenRequests();
    const refresh = runCli(ws, ["refresh"]);
    await held.arrived;
    const filler = await fill(ws.env.XDG_STATE_HOME as string);
    held.release();
    const r = await refresh;
    realm.fault = undefined;
    assert.equal(r.code, 0, r.stderr);
    assert.notEqual((await readState(ws)).refresh_token, before, "the rotated token was saved");
    await run("rm", ["-f", filler]);
    const again = await runCli(ws, ["refresh"]);
    assert.equal(again.code, 0, `the session survived: ${again.stderr}`);
  });

  test("refresh fails before the grant, naming the file, and the session survives", async () => {
    const ws = await smallStateDisk();
    await signIn(ws);
    assert.equal((await runCli(ws, ["refresh"])).code, 0);
    const filler = await fill(ws.env.XDG_STATE_HOME as string);
    const r = await runCli(ws, ["refresh"]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(
        `^error: ${store(ws).file.replace(/[.]/g, "\\.").replace(/\//g, "\\/")}.*no space left on device \\(ENOSPC\\)`,
        "m",
      ),
    );
    await run("rm", ["-f", filler]);
    const again = await runCli(ws, ["refresh"]);
    assert.equal(again.code, 0, `the session survived: ${again.stderr}`);
  });
});

describe("a full disk before the browser (issue 20)", () => {
  /** A browser command that only leaves a mark: had it run, the sign-in would have started. */
  async function markingBrowser(ws: Workspace): Promise<{ script: string; mark: string }> {
    const mark = join(ws.dir, "browser-opened");
    const script = join(ws.dir, "browser.sh");
    await writeFile(script, `#!/bin/sh\ntouch ${mark}\n`, { mode: 0o700 });
    return { script, mark };
  }

  for (const where of ["state", "netrc"] as const) {
    test(`login on a full ${where} disk fails before the browser opens, naming the file`, async () => {
      const ws = await userWorkspace();
      const dir = where === "state" ? (ws.env.XDG_STATE_HOME as string) : dirname(ws.netrcPath);
      await mkdir(dir, { recursive: true });
      await run("mount", ["-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", dir]);
      mounts.push(dir);
      await fill(dir);
      const browser = await markingBrowser(ws);
      realm.clearRequests();
      const r = await runCli(ws, ["login", "--browser-command", browser.script]);
      assert.equal(r.code, 1, r.stderr);
      const file = where === "state" ? store(ws).file : ws.netrcPath;
      assert.match(
        r.stderr,
        new RegExp(`^error: ${file.replace(/[.]/g, "\\.")}: .*no space left on device \\(ENOSPC\\)`, "m"),
      );
      await assert.rejects(stat(browser.mark), "the browser was never opened");
      assert.equal(realm.countRequests("/auth"), 0, "no sign-in was started");
      assert.deepEqual(
        (await readdir(dir)).filter((f) => f !== "filler" && f !== "nix-cache-login"),
        [],
        "no probe left behind",
      );
    });
  }
});

describe("a full disk where no hard link can be made", () => {
  // Where link() is refused (some FUSE and FAT file systems) the lock is created with O_EXCL and
  // then written. This kernel has no such file system to mount, so the creation is called here,
  // on a full tmpfs: the file can be made (an inode is left) but its record cannot be written.
  test("a lock record that cannot be written leaves no empty lock for others to wait on", async (t) => {
    const dir = await mkdtemp(join(tmpdir(), "ncl-lockdisk-"));
    t.after(async () => {
      await run("umount", ["-l", dir]).catch(() => undefined);
      await rmdir(dir);
    });
    await run("mount", ["-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", dir]);
    await fill(dir);
    const lock = join(dir, "netrc.lock");
    await assert.rejects(createWhole(lock, `${"x".repeat(64 * 1024)}\n`), /ENOSPC/);
    assert.deepEqual(await readdir(dir), ["filler"], "the lock file was removed again");
  });
});

describe("temp files (item 7)", () => {
  test("stale temp files of ours are removed on write and by logout; a live writer's are kept", async () => {
    const ws = await userWorkspace();
    await signIn(ws);
    const dead = await deadPid();
    const netrcDir = dirname(ws.netrcPath);
    await mkdir(netrcDir, { recursive: true });
    const staleNetrc = join(netrcDir, `.netrc.${dead}.0123456789ab.tmp`);
    const liveNetrc = join(netrcDir, `.netrc.${process.pid}.0123456789ab.tmp`);
    const foreign = join(netrcDir, `.netrc.${dead}.not-ours.tmp`);
    for (const f of [staleNetrc, liveNetrc, foreign]) await writeFile(f, "machine x password leaked-token\n");
    const stateName = store(ws).file.split("/").pop() as string;
    const staleState = join(ws.stateDir, `.${stateName}.${dead}.0123456789ab.tmp`);
    await writeFile(staleState, '{"refresh_token":"leaked"}');
    assert.equal((await runCli(ws, ["refresh"])).code, 0);
    await assert.rejects(stat(staleNetrc), "removed on the netrc write");
    await assert.rejects(stat(staleState), "removed on the state write");
    await stat(liveNetrc);
    await stat(foreign);
    await writeFile(staleState, '{"refresh_token":"leaked"}');
    const out = await runCli(ws, ["logout"]);
    assert.equal(out.code, 0, out.stderr);
    await assert.rejects(stat(staleState), "removed by logout");
  });
});

describe("corrupt token state (item 10)", () => {
  test("logout removes it (no copy: it may hold a refresh token) and still cleans up locally", async () => {
    const ws = await userWorkspace();
    await signIn(ws);
    assert.equal((await runCli(ws, ["refresh"])).code, 0);
    await writeFile(store(ws).file, "{ not json", { mode: 0o644 });
    await chmod(store(ws).file, 0o644);
    const refused = await runCli(ws, ["refresh"]);
    assert.equal(refused.code, 1);
    assert.match(
      refused.stderr,
      /^hint: run `nix-cache-login login` \(it moves the file aside and starts afresh\) or `nix-cache-login logout`/m,
    );
    const r = await runCli(ws, ["logout"]);
    assert.equal(r.code, 0, r.stderr);
    const m = /^warning: (\S+): token state is corrupt; removing it with the local tokens$/m.exec(r.stderr);
    assert.ok(m, r.stderr);
    assert.equal(m[1], store(ws).file);
    await assert.rejects(stat(store(ws).file));
    assert.deepEqual(
      (await readdir(ws.stateDir)).filter((f) => f.includes(".corrupt-")),
      [],
    );
    assert.equal(netrcPassword(await readFile(ws.netrcPath, "utf8"), HOST), undefined, "the entry is gone");
  });

  test("service-account moves it aside and gets a token", async () => {
    const ws = await serviceWorkspace();
    const s = store(ws, realm.serviceClientId);
    await mkdir(ws.stateDir, { recursive: true, mode: 0o700 });
    await writeFile(s.file, "garbage", { mode: 0o600 });
    const r = await runCli(ws, ["service-account"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(
        `^warning: ${s.file.replace(/[.]/g, "\\.")}: token state is corrupt; moved it aside to \\S+$`,
        "m",
      ),
    );
    const aside = (await readdir(ws.stateDir)).filter((f) => f.includes(".corrupt-"));
    assert.equal(aside.length, 1);
  });

  test("at most the last three corrupt copies are kept; logout removes them all", async () => {
    const ws = await serviceWorkspace();
    const s = store(ws, realm.serviceClientId);
    await mkdir(ws.stateDir, { recursive: true, mode: 0o700 });
    const seen: string[] = [];
    for (let i = 1; i <= 5; i++) {
      await writeFile(s.file, `garbage ${i}`, { mode: 0o600 });
      const r = await runCli(ws, ["service-account"]);
      assert.equal(r.code, 0, r.stderr);
      seen.push((/moved it aside to (\S+)$/m.exec(r.stderr) as RegExpExecArray)[1] as string);
    }
    const aside = (await readdir(ws.stateDir)).filter((f) => f.includes(".corrupt-")).sort();
    assert.deepEqual(
      aside.map((f) => join(ws.stateDir, f)),
      seen.slice(-3).sort(),
      "the newest three are kept",
    );
    assert.equal(await readFile(seen[4] as string, "utf8"), "garbage 5");
    const out = await runCli(ws, ["logout"]);
    assert.equal(out.code, 0, out.stderr);
    assert.deepEqual(
      (await readdir(ws.stateDir)).filter((f) => f.includes(".corrupt-")),
      [],
      "logout leaves no copy",
    );
  });

  test("login --device moves it aside and signs in", async () => {
    const ws = await userWorkspace();
    await mkdir(ws.stateDir, { recursive: true, mode: 0o700 });
    await writeFile(store(ws).file, "[]", { mode: 0o600 });
    let child!: ChildProcess;
    const login = runCli(ws, ["login", "--device"], { onSpawn: (c) => (child = c) });
    const code = await stderrMatch(child, /user_code=([A-Za-z0-9-]+)/);
    await realm.approveDevice(code[1] as string);
    const r = await login;
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^warning: \S+: token state is corrupt; moved it aside to \S+\.corrupt-\S+$/m);
    assert.equal(typeof (await readState(ws)).refresh_token, "string");
  });
});

describe("service accounts (item 11)", () => {
  test("invalid_grant on client credentials names the client, its secret and the provider, not login", async () => {
    const ws = await serviceWorkspace();
    realm.fault = (req) =>
      req.method === "POST" && req.path.endsWith("/token")
        ? {
            kind: "respond",
            status: 400,
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ error: "invalid_grant", error_description: "Account disabled" }),
          }
        : "pass";
    const r = await runCli(ws, ["service-account"]);
    realm.fault = undefined;
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      /^error: 127\.0\.0\.1:\d+ refused the client credentials grant for client nix-cache-server: invalid_grant \(Account disabled\)$/m,
    );
    assert.match(
      r.stderr,
      new RegExp(`^hint: .*client nix-cache-server.*${join(ws.dir, "client-secret")}`, "m"),
    );
    assert.doesNotMatch(r.stderr, /nix-cache-login login/);
  });
});
