/**
 * Another local user gets nothing (issue 21): each exploit of the issue, run with real local users
 * through the built CLI. The victim is ncl-test-a, the attacker ncl-test-b (test/support/users.ts;
 * root, the test runner, is the admin and, where the issue says so, the victim). These tests need
 * root, as CI has, and fail saying so otherwise. Every output is scanned for the secrets on disk.
 */
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import {
  chmod,
  chown,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  lstat,
  rm,
  stat,
  symlink,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";
import { requireChromium } from "../support/chromium.ts";
import { BROWSER_COMMAND, readDriverResult, TSX } from "../support/driver.ts";
import {
  assertNoSecrets,
  CLI,
  harvestSecrets,
  makeWorkspace,
  runCli,
  snapshot,
  type RunResult,
  type Workspace,
} from "../support/cli.ts";
import { startRecorder, type Recorder } from "../support/hostile-provider.ts";
import { startRealm, type Realm } from "../support/realm.ts";
import { ensureUser, runAs, USER_A, USER_B, type AsUserResult, type TestUser } from "../support/users.ts";
import { StateStore } from "../../src/store/state.ts";

const run = promisify(execFile);
const CACHE_HOST = "cache.example.test";
const THIEF = new URL("../support/argv-thief.ts", import.meta.url).pathname;

let realm: Realm;
let recorder: Recorder;
let victim: TestUser;
let attacker: TestUser;
const cleanups: (() => Promise<void>)[] = [];

before(async () => {
  victim = await ensureUser(USER_A);
  attacker = await ensureUser(USER_B);
  realm = await startRealm({ tls: false, users: { alice: "alice-password", mallory: "mallory-password" } });
  recorder = await startRecorder();
});
after(async () => {
  await realm.stop();
  await recorder.stop();
  for (const c of cleanups) await c();
});

/** A workspace (HOME, XDG dirs) that belongs to `user`. */
async function workspaceOf(user: TestUser | undefined, config: Record<string, unknown>): Promise<Workspace> {
  const ws = await makeWorkspace(config);
  cleanups.push(() => ws.cleanup());
  if (user !== undefined) await run("chown", ["-R", `${user.uid}:${user.gid}`, ws.dir]);
  return ws;
}

/** A directory of the test's own for files of several users: root's, 0755. */
async function scratch(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "ncl-users-"));
  await chmod(dir, 0o755);
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** The built CLI as `user`, with the workspace's environment; its output is scanned for secrets. */
async function cliAs(
  user: TestUser,
  ws: Workspace,
  args: string[],
  env: Record<string, string> = {},
): Promise<AsUserResult> {
  for (const a of args) assertNoSecrets(ws, a, "argv");
  const r = await runAs(user, process.execPath, [CLI, ...args], { ...ws.env, ...env });
  await harvestSecrets(ws);
  assertNoSecrets(ws, r.stdout, `stdout of ${args.join(" ")}`);
  assertNoSecrets(ws, r.stderr, `stderr of ${args.join(" ")}`);
  return r;
}

interface DoctorCheck {
  id: string;
  status: string;
  summary: string;
}

/** `doctor --json` as `user`: the check with that id. */
async function doctorCheck(
  user: TestUser,
  ws: Workspace,
  id: string,
  env: Record<string, string> = {},
): Promise<DoctorCheck | undefined> {
  const r = await cliAs(user, ws, ["doctor", "--json"], env);
  return (JSON.parse(r.stdout) as { checks: DoctorCheck[] }).checks.find((c) => c.id === id);
}

/** A service account's secret file, owned by `owner` with `mode`. */
async function secretFile(dir: string, owner: TestUser | undefined, mode: number): Promise<string> {
  const file = join(dir, `secret-${Math.random().toString(36).slice(2)}`);
  await writeFile(file, `${realm.serviceClientSecret}\n`);
  await chmod(file, mode);
  if (owner !== undefined) await chown(file, owner.uid, owner.gid);
  return file;
}

function serviceConfig(
  ws: Workspace,
  file: string,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  ws.secrets.add(realm.serviceClientSecret);
  return {
    issuer: realm.issuer,
    client_id: realm.serviceClientId,
    cache_host: CACHE_HOST,
    client_secret_file: file,
    ...extra,
  };
}

describe("issue 21: another local user gets nothing (needs root)", { concurrency: false }, () => {
  test("1. the sign-in URL on the browser's argv: a racing attacker gets a bare 403, the victim signs in as the victim", async () => {
    requireChromium();
    const ws = await workspaceOf(victim, {
      issuer: realm.issuer,
      client_id: realm.publicClientId,
      cache_host: CACHE_HOST,
    });
    const race = await scratch();
    await chown(race, attacker.uid, attacker.gid);
    const thiefResult = join(race, "thief.json");
    const thiefDone = join(race, "thief-done");
    const driverResult = join(ws.dir, "driver.json");

    // The attacker polls /proc for the victim's browser command line while the victim signs in.
    const thief = runAs(attacker, process.execPath, ["--import", TSX, THIEF], {
      THIEF_RESULT: thiefResult,
      THIEF_DONE: thiefDone,
      THIEF_VICTIM_UID: String(victim.uid),
      THIEF_TIMEOUT_MS: "60000",
      HOME: race,
    });
    const login = await cliAs(
      victim,
      ws,
      ["login", "--verbose", "--timeout", "90s", "--browser-command", BROWSER_COMMAND],
      {
        DRIVER_MODE: "login",
        DRIVER_RESULT: driverResult,
        DRIVER_USER: "alice",
        DRIVER_PASSWORD: "alice-password",
        // The victim's browser opens the URL only after the attacker has fetched it: it goes first.
        DRIVER_WAIT_FOR: thiefDone,
      },
    );
    const thiefRun = await thief;
    assert.equal(thiefRun.code, 0, thiefRun.stderr);
    const thiefText = await readFile(thiefResult, "utf8");
    for (const [what, text] of [
      ["the attacker's output", thiefRun.stdout + thiefRun.stderr],
      ["what the attacker got", thiefText],
    ] as const) {
      assertNoSecrets(ws, text, what);
    }
    const stolen = JSON.parse(thiefText) as {
      found: boolean;
      scans: number;
      uid: number;
      foundInPid: number;
      start: { status: number; bodyBytes: number; location: boolean };
      callback: { status: number; bodyBytes: number };
    };
    assert.equal(stolen.found, true, "the attacker read the sign-in URL in /proc");
    assert.equal(stolen.uid, attacker.uid);
    // Before the fix: 302 to the authorization endpoint (the victim's browser then got 410).
    assert.deepEqual(
      stolen.start,
      { status: 403, bodyBytes: 0, location: false },
      "a bare 403 for the start path",
    );
    assert.deepEqual(stolen.callback, { status: 403, bodyBytes: 0 }, "a bare 403 for the callback");

    assert.equal(login.code, 0, login.stderr);
    const driver = await readDriverResult(driverResult);
    assertNoSecrets(ws, JSON.stringify(driver), "the browser driver's summary");
    assert.equal(driver.ok, true, JSON.stringify(driver));
    assert.equal(driver.status, 200);
    assert.match(
      login.stderr,
      /verbose: refused a request from another local user \(HTTP 403\); the sign-in goes on/,
    );
    // Not which user.
    assert.doesNotMatch(login.stderr, new RegExp(`\\b${USER_B}\\b|uid ${attacker.uid}\\b`));
    assert.match(login.stderr, /^Signed in as alice at /m);
    // No earlier account to compare with: the account is named where it cannot be missed.
    assert.match(
      login.stderr,
      /^>>> First sign-in here: the netrc now holds the token of the account "alice"\. If that is not you, run `nix-cache-login logout` now\. <<<$/m,
    );
    const store = new StateStore(ws.stateDir, realm.issuer, realm.publicClientId);
    const state = JSON.parse(await readFile(store.file, "utf8")) as { username?: string };
    assert.equal(state.username, "alice");
    assert.equal((await stat(store.file)).uid, victim.uid, "the victim's own state");
    const netrc = await readFile(ws.netrcPath, "utf8");
    assert.match(netrc, new RegExp(`machine ${CACHE_HOST.replace(/\./g, "\\.")}`));
  });

  test("2. a configuration another user could have written is not used: the client secret never goes where it says", async () => {
    const dir = await scratch();
    const ws = await workspaceOf(victim, {});
    const secret = await secretFile(ws.dir, victim, 0o600);
    const body = Object.entries(serviceConfig(ws, secret, { issuer: recorder.url }))
      .map(([k, v]) => `${k} = ${JSON.stringify(v)}\n`)
      .join("");

    // (a) A 0666 file owned by the attacker.
    const planted = join(dir, "config.toml");
    await writeFile(planted, body);
    await chown(planted, attacker.uid, attacker.gid);
    await chmod(planted, 0o666);
    recorder.requests.length = 0;
    const a = await cliAs(victim, ws, ["service-account", "--config", planted]);
    assert.equal(a.code, 2, a.stderr);
    assert.match(
      a.stderr,
      new RegExp(
        `^error: ${planted}: the configuration file is owned by uid ${attacker.uid} \\(${USER_B}\\), not by uid ${victim.uid} \\(${USER_A}\\) who runs nix-cache-login \\(nor root\\), so another user could have written it; nix-cache-login does not use it$`,
        "m",
      ),
    );
    assert.equal(recorder.requests.length, 0, "no request to the issuer the planted file names");

    // (b) The victim's own file, in a directory the attacker owns (it could swap the file), reached
    // through the victim's symlink.
    const theirs = join(dir, "attacker-dir");
    await mkdir(theirs);
    await chown(theirs, attacker.uid, attacker.gid);
    const inside = join(theirs, "config.toml");
    await writeFile(inside, body, { mode: 0o600 });
    await chown(inside, victim.uid, victim.gid);
    await mkdir(join(ws.env.XDG_CONFIG_HOME as string, "nix-cache-login"), { recursive: true });
    await rm(ws.configPath, { force: true });
    await symlink(inside, ws.configPath);
    await run("chown", ["-hR", `${victim.uid}:${victim.gid}`, ws.env.XDG_CONFIG_HOME as string]);
    const b = await cliAs(victim, ws, ["service-account"]);
    assert.equal(b.code, 2, b.stderr);
    assert.match(
      b.stderr,
      new RegExp(
        `^error: ${ws.configPath}: the configuration path goes through ${theirs}, a directory owned by uid ${attacker.uid} \\(${USER_B}\\)`,
        "m",
      ),
    );
    assert.equal(recorder.requests.length, 0);
    assert.equal((await doctorCheck(victim, ws, "config"))?.status, "problem");
    assert.equal(recorder.requests.length, 0);
  });

  test("3. credential files: refused when others can write them, a warning (and a doctor problem) when others can read them; $CREDENTIALS_DIRECTORY passes", async () => {
    const ws = await workspaceOf(victim, {});
    // The attacker's world-readable secret.
    const theirs = await secretFile(ws.dir, attacker, 0o644);
    await ws.writeConfig(serviceConfig(ws, theirs));
    await run("chown", ["-R", `${victim.uid}:${victim.gid}`, ws.env.XDG_CONFIG_HOME as string]);
    const refused = await cliAs(victim, ws, ["service-account"]);
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(
      refused.stderr,
      new RegExp(
        `^error: client_secret_file ${theirs}: the file is owned by uid ${attacker.uid} \\(${USER_B}\\), .*, so another user could have changed it; it is not used$`,
        "m",
      ),
    );
    assert.equal(existsSync(ws.netrcPath), false, "nothing written");
    let check = await doctorCheck(victim, ws, "client_secret");
    assert.equal(check?.status, "problem", "doctor said ok before the fix");

    // Group-writable, though the victim's own: refused.
    const writable = await secretFile(ws.dir, victim, 0o620);
    await ws.writeConfig(serviceConfig(ws, writable));
    const w = await cliAs(victim, ws, ["service-account"]);
    assert.equal(w.code, 1, w.stderr);
    assert.match(
      w.stderr,
      /the file is writable by group \(mode 0620\), so another user could have changed it/,
    );

    // The victim's own, readable by everyone: used, with a warning; doctor reports it.
    const readable = await secretFile(ws.dir, victim, 0o644);
    await ws.writeConfig(serviceConfig(ws, readable));
    const r = await cliAs(victim, ws, ["service-account"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(
        `^warning: client_secret_file ${readable} is readable by every local user \\(mode 0644\\): \`chmod o-r `,
        "m",
      ),
    );
    check = await doctorCheck(victim, ws, "client_secret");
    assert.equal(check?.status, "problem");
    assert.match(check?.summary ?? "", /is readable by every local user/);

    // systemd's credentials directory: its files pass as they are.
    const creds = join(ws.dir, "credentials");
    await mkdir(creds, { mode: 0o755 });
    const cred = join(creds, "client-secret");
    await writeFile(cred, `${realm.serviceClientSecret}\n`, { mode: 0o644 });
    await ws.writeConfig(serviceConfig(ws, "${CREDENTIALS_DIRECTORY}/client-secret"));
    const s = await cliAs(victim, ws, ["service-account"], { CREDENTIALS_DIRECTORY: creds });
    assert.equal(s.code, 0, s.stderr);
    assert.doesNotMatch(s.stderr, /warning/);
  });

  test("4. root's netrc_path through another user's symlinked directory is refused; nothing is written where it points", async () => {
    const dir = await scratch();
    const shared = join(dir, "shared");
    await mkdir(shared);
    await chmod(shared, 0o1777);
    // A root-owned directory the attacker picks (a stand-in for /etc/cron.d and the like).
    const chosen = join(dir, "chosen");
    await mkdir(chosen, { mode: 0o755 });
    const link = join(shared, "nix");
    const made = await runAs(attacker, "ln", ["-s", chosen, link]);
    assert.equal(made.code, 0, made.stderr);
    const ws = await workspaceOf(undefined, {});
    const secret = await secretFile(ws.dir, undefined, 0o600);
    await ws.writeConfig(serviceConfig(ws, secret, { netrc_path: join(link, "netrc") }));
    const before = await snapshot(chosen);
    const r = await runCli(ws, ["service-account"]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(
        `^error: netrc_path ${link}/netrc: its path goes through ${link}, a symbolic link owned by uid ${attacker.uid} \\(${USER_B}\\), not by root .*; nix-cache-login does not write a token there$`,
        "m",
      ),
    );
    assert.deepEqual(await snapshot(chosen), before, "nothing written where the link points");
  });

  test("5. root with another user's HOME (sudo -E) is refused in one line and leaves that home alone", async () => {
    const ws = await workspaceOf(victim, {});
    const secret = await secretFile(ws.dir, victim, 0o600);
    await ws.writeConfig(serviceConfig(ws, secret));
    await run("chown", ["-R", `${victim.uid}:${victim.gid}`, ws.dir]);
    const home = await snapshot(ws.home);
    for (const args of [["service-account"], ["status"], ["login", "--no-browser"], ["timer", "install"]]) {
      const r = await runCli(ws, args);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.equal(
        r.stderr,
        `error: $HOME is ${ws.home}, which belongs to ${USER_A}, but nix-cache-login runs as root; it does not use or create files in another user's home\n` +
          `hint: for ${USER_A}, run it as ${USER_A} (\`sudo -u ${USER_A} -H nix-cache-login ...\`, or without sudo); for root, give root its own HOME (\`sudo -H nix-cache-login ...\`)\n` +
          "see: docs/configuration.md\n",
      );
    }
    assert.deepEqual(await snapshot(ws.home), home, "no directory, no file made in the victim's home");
    // The victim's own commands still work there.
    const own = await cliAs(victim, ws, ["service-account"]);
    assert.equal(own.code, 0, own.stderr);
    const status = await cliAs(victim, ws, ["status"]);
    assert.equal(status.code, 0, status.stderr);
    // Root with its own paths (--config, XDG_STATE_HOME and netrc_path outside that home) is fine.
    const elsewhere = await scratch();
    const rootSecret = await secretFile(elsewhere, undefined, 0o600);
    const config = join(elsewhere, "config.toml");
    await writeFile(
      config,
      Object.entries(serviceConfig(ws, rootSecret, { netrc_path: join(elsewhere, "netrc") }))
        .map(([k, v]) => `${k} = ${JSON.stringify(v)}\n`)
        .join(""),
    );
    const untouched = await snapshot(ws.home);
    const root = await runCli(ws, ["service-account", "--config", config], {
      env: { XDG_STATE_HOME: join(elsewhere, "state") },
    });
    assert.equal(root.code, 0, root.stderr);
    assert.deepEqual(await snapshot(ws.home), untouched);
  });

  test("6. a lock another user planted in a shared sticky directory: the message names the owner and what to do", async () => {
    const dir = await scratch();
    const shared = join(dir, "shared");
    await mkdir(shared);
    await chmod(shared, 0o1777);
    const ws = await workspaceOf(victim, {});
    const secret = await secretFile(ws.dir, victim, 0o600);
    const netrc = join(shared, "netrc-of-a");
    await ws.writeConfig(serviceConfig(ws, secret, { netrc_path: netrc }));
    await run("chown", ["-R", `${victim.uid}:${victim.gid}`, ws.dir]);
    const planted = await runAs(attacker, "sh", [
      "-c",
      `printf '{"pid":1,"boot":"forged","start":"1","host":"x","since":"2099-01-01T00:00:00Z","command":"x","nonce":"00000000"}' > '${netrc}.lock'`,
    ]);
    assert.equal(planted.code, 0, planted.stderr);
    const r = await cliAs(victim, ws, ["service-account"]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(
        `^error: ${netrc}\\.lock was made by uid ${attacker.uid} \\(${USER_B}\\), not by you: another user's lock is not waited for, and it blocks every write of netrc-of-a$`,
        "m",
      ),
    );
    assert.match(
      r.stderr,
      new RegExp(
        `^hint: in the shared directory ${shared} \\(sticky\\) only uid ${attacker.uid} \\(${USER_B}\\) or root can remove it: ask them to .*, or point the setting at a file in a directory of your own, where no one else can block it$`,
        "m",
      ),
    );
  });

  test("7. status, refresh --min-valid and doctor apply the write path's checks to the state and the netrc", async () => {
    const dir = await scratch();
    const ws = await workspaceOf(victim, {
      issuer: realm.issuer,
      client_id: realm.publicClientId,
      cache_host: CACHE_HOST,
    });
    // A state planted in a place the attacker chose: the victim's XDG_STATE_HOME is a root-owned
    // symlink (an admin's) into the attacker's directory, whose nix-cache-login is the attacker's
    // link to a root-owned directory with a state naming mallory, valid until 2099.
    const token = "planted-access-token-of-mallory";
    const theirs = join(dir, "attacker");
    await mkdir(theirs, { mode: 0o755 });
    await chown(theirs, attacker.uid, attacker.gid);
    const rootState = join(dir, "root-state");
    await mkdir(rootState, { mode: 0o755 });
    const store = new StateStore(rootState, realm.issuer, realm.publicClientId);
    await writeFile(
      store.file,
      JSON.stringify({
        ...store.empty("user"),
        username: "mallory",
        access_token: token,
        access_token_expires_at: "2099-01-01T00:00:00.000Z",
      }),
      { mode: 0o644 },
    );
    const made = await runAs(attacker, "ln", ["-s", rootState, join(theirs, "nix-cache-login")]);
    assert.equal(made.code, 0, made.stderr);
    const stateHome = join(dir, "state-home");
    await symlink(theirs, stateHome);
    // The netrc: a root-owned symlink (an admin's) to the attacker's file holding the same token.
    const netrc = join(theirs, "netrc");
    await writeFile(netrc, `machine ${CACHE_HOST} login nix-cache-login password ${token}\n`, {
      mode: 0o644,
    });
    await chown(netrc, attacker.uid, attacker.gid);
    const netrcDir = join(ws.env.XDG_CONFIG_HOME as string, "nix");
    await mkdir(netrcDir, { recursive: true, mode: 0o700 });
    await chown(netrcDir, victim.uid, victim.gid);
    await symlink(netrc, ws.netrcPath);
    const env = { XDG_STATE_HOME: stateHome };

    const status = await cliAs(victim, ws, ["status"], env);
    assert.equal(status.code, 1, status.stderr);
    assert.doesNotMatch(status.stdout + status.stderr, /mallory|2099/);
    assert.match(
      status.stderr,
      new RegExp(
        `^error: ${stateHome}/nix-cache-login: the token state directory's path goes through ${theirs}, a directory owned by uid ${attacker.uid} \\(${USER_B}\\)`,
        "m",
      ),
    );
    const refresh = await cliAs(victim, ws, ["refresh", "--min-valid", "5m"], env);
    assert.equal(refresh.code, 1, refresh.stderr);
    assert.match(refresh.stderr, /token state directory's path goes through/);

    // With the victim's own state, the planted netrc is what is refused.
    const own = { XDG_STATE_HOME: join(ws.home, ".local", "state") };
    const mine = new StateStore(
      join(own.XDG_STATE_HOME, "nix-cache-login"),
      realm.issuer,
      realm.publicClientId,
    );
    await mkdir(mine.dir, { recursive: true, mode: 0o700 });
    await writeFile(
      mine.file,
      JSON.stringify({
        ...mine.empty("user"),
        username: "alice",
        access_token: token,
        access_token_expires_at: "2099-01-01T00:00:00.000Z",
      }),
      { mode: 0o600 },
    );
    await run("chown", ["-R", `${victim.uid}:${victim.gid}`, join(ws.home, ".local")]);
    const netrcRefused = new RegExp(
      // The link leads through the attacker's directory: refused there, before the file is looked at.
      `netrc_path ${ws.netrcPath}: its path goes through ${dirname(netrc)}, a directory owned by uid ${attacker.uid} \\(${USER_B}\\), .*; nix-cache-login does not use it`,
    );
    const status2 = await cliAs(victim, ws, ["status"], own);
    assert.equal(status2.code, 1, status2.stderr);
    assert.match(status2.stderr, netrcRefused);
    const refresh2 = await cliAs(victim, ws, ["refresh", "--min-valid", "5m"], own);
    assert.equal(refresh2.code, 1, refresh2.stderr);
    assert.match(refresh2.stderr, netrcRefused);
    const netrcCheck = await doctorCheck(victim, ws, "netrc_file", own);
    assert.equal(netrcCheck?.status, "problem");
    assert.match(netrcCheck?.summary ?? "", netrcRefused);
    const tokenCheck = await doctorCheck(victim, ws, "token", env);
    assert.equal(tokenCheck?.status, "problem");
    assert.match(tokenCheck?.summary ?? "", /token state directory's path goes through/);
  });

  test("8. timer install never writes through a planted temp file name; timer status shows the unit's %% escapes reverted", async () => {
    const ws = await workspaceOf(undefined, {
      issuer: realm.issuer,
      client_id: realm.publicClientId,
      cache_host: CACHE_HOST,
    });
    const odd = join(ws.dir, "100% sure");
    await mkdir(odd);
    const config = join(odd, "config.toml");
    await writeFile(config, await readFile(ws.configPath, "utf8"));
    const units = join(ws.env.XDG_CONFIG_HOME as string, "systemd", "user");
    await mkdir(units, { recursive: true, mode: 0o700 });
    const victimFile = join(ws.dir, "victim-file");
    await writeFile(victimFile, "precious\n", { mode: 0o644 });
    // The old temp file name was `<unit>.<pid>.tmp`: plant it for the very process that runs (the
    // shell's PID is the CLI's after exec).
    const child = spawn(
      "sh",
      [
        "-c",
        'ln -s "$VICTIM" "$UNITS/nix-cache-login.service.$$.tmp" && ln -s "$VICTIM" "$UNITS/nix-cache-login.timer.$$.tmp" && exec "$NODE" "$CLI" timer install --config "$CONFIG"',
      ],
      {
        env: { ...ws.env, VICTIM: victimFile, UNITS: units, NODE: process.execPath, CLI, CONFIG: config },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.stdout.resume();
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    assert.equal(code, 0, stderr);
    assert.equal(await readFile(victimFile, "utf8"), "precious\n", "the planted link's target is untouched");
    const service = join(units, "nix-cache-login.service");
    const st = await stat(service);
    assert.ok(st.isFile());
    assert.equal(st.mode & 0o777, 0o644);
    const { lstat } = await import("node:fs/promises");
    assert.equal((await lstat(service)).isSymbolicLink(), false, "the unit is a file, not the planted link");
    assert.match(await readFile(service, "utf8"), /100%% sure/);
    const planted = [`nix-cache-login.service.${child.pid}.tmp`, `nix-cache-login.timer.${child.pid}.tmp`];
    assert.deepEqual(
      (await readdir(units)).filter((n) => n.endsWith(".tmp")).sort(),
      planted.sort(),
      "the planted links stay as they were, and no temp file of ours is left",
    );

    const status: RunResult = await runCli(ws, ["timer", "status"]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(
      status.stdout,
      new RegExp(`runs: .* refresh --min-valid \\S+ --config ${config.replace(/[.]/g, "\\.")}\\n`),
    );
    assert.doesNotMatch(status.stdout, /%%|stale/);
  });

  test("a netrc linked to a root-owned file in a sticky, group-writable directory (Home Manager's /nix/store) is read, not refused", async () => {
    // /nix/store is root:nixbld 1775: in a sticky directory only the file's owner, the directory's
    // owner and root can replace a file, and here all of them are root.
    const store = join(await scratch(), "store");
    await mkdir(store);
    await chmod(store, 0o1775);
    const target = join(store, "abc-netrc");
    await writeFile(target, "machine other.example.test login x password y\n");
    await chmod(target, 0o444);
    const ws = await workspaceOf(victim, {
      issuer: realm.issuer,
      client_id: realm.publicClientId,
      cache_host: CACHE_HOST,
    });
    const made = await runAs(victim, "sh", [
      "-c",
      `mkdir -p "$(dirname "$1")" && ln -s "$2" "$1"`,
      "sh",
      ws.netrcPath,
      target,
    ]);
    assert.equal(made.code, 0, made.stderr);
    const r = await cliAs(victim, ws, ["status"]);
    assert.equal(r.code, 3, r.stderr);
    assert.doesNotMatch(r.stderr, /could replace the file|chmod go-w/);
    assert.match(r.stdout, new RegExp(`netrc: +${ws.netrcPath.replace(/[.]/g, "\\.")}: `));
  });

  test("a netrc link that leads through another user's directory is refused, wherever that user points it next", async () => {
    const dir = await scratch();
    // Ours (root's): a file the attacker would like our netrc written into.
    const mine = join(dir, "mine");
    await mkdir(mine, { mode: 0o700 });
    const precious = join(mine, "precious");
    await writeFile(precious, "root's file\n");
    await chmod(precious, 0o644);
    // The attacker's directory, and in it a link of the attacker's to that file.
    const theirs = join(dir, "theirs");
    await mkdir(theirs, { mode: 0o755 });
    await chown(theirs, attacker.uid, attacker.gid);
    const hop = join(theirs, "netrc");
    const made = await runAs(attacker, "ln", ["-s", precious, hop]);
    assert.equal(made.code, 0, made.stderr);
    const ws = await workspaceOf(undefined, {});
    const secret = await secretFile(ws.dir, undefined, 0o600);
    await ws.writeConfig(serviceConfig(ws, secret));
    // Our own netrc path is a link (as Home Manager makes one) to the hop in their directory.
    await mkdir(dirname(ws.netrcPath), { recursive: true });
    await symlink(hop, ws.netrcPath);
    const before = await snapshot(mine);
    const r = await runCli(ws, ["service-account"]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(
        `^error: netrc_path ${ws.netrcPath}: its path goes through ${theirs}, a directory owned by uid ${attacker.uid} \\(${USER_B}\\).*; nix-cache-login does not write a token there$`,
        "m",
      ),
    );
    assert.deepEqual(await snapshot(mine), before, "the file the chain ends at is untouched, mode included");
    assert.equal((await lstat(precious)).mode & 0o777, 0o644);
  });

  test("a netrc another user can write is neither read nor written: its entries could be theirs", async () => {
    const ws = await workspaceOf(undefined, {});
    const secret = await secretFile(ws.dir, undefined, 0o600);
    // In a directory of ours the attacker can pass through (not write to).
    const netrc = join(await scratch(), "netrc");
    await ws.writeConfig(serviceConfig(ws, secret, { netrc_path: netrc }));
    ws.netrcPath = netrc;
    await writeFile(ws.netrcPath, "");
    await chmod(ws.netrcPath, 0o666);
    // The attacker writes entries: one for our cache host, one that Nix would send elsewhere.
    const wrote = await runAs(attacker, "sh", [
      "-c",
      `printf 'machine ${CACHE_HOST} login x password forged\\nmachine other.example.test login me password theirs\\n' > "$1"`,
      "sh",
      ws.netrcPath,
    ]);
    assert.equal(wrote.code, 0, wrote.stderr);
    const before = await readFile(ws.netrcPath, "utf8");
    assert.match(before, /forged/);
    const why = `^error: netrc_path ${ws.netrcPath.replace(/[.]/g, "\\.")}: the file is writable by others \\(mode 0666\\), so another user could have written its entries; nix-cache-login does not`;
    const status = await runCli(ws, ["status"]);
    assert.notEqual(status.code, 0, status.stderr);
    assert.match(status.stderr, new RegExp(`${why} use it$`, "m"));
    assert.match(status.stderr, /^hint: check its entries, then `chmod 600 /m);
    const write = await runCli(ws, ["service-account"]);
    assert.equal(write.code, 1, write.stderr);
    assert.match(write.stderr, new RegExp(`${why} write a token there$`, "m"));
    assert.equal(await readFile(ws.netrcPath, "utf8"), before, "nothing merged, nothing written");
  });

  test("a netrc directory another user slips in while ours is being made is refused, never used (a real race, 30 runs)", async () => {
    const dir = await scratch();
    const shared = join(dir, "shared");
    await mkdir(shared);
    await chmod(shared, 0o1777);
    const contested = join(shared, "nd");
    // The attacker makes and removes the directory as fast as it can, for as long as the test runs.
    const loop = spawn(
      "setpriv",
      [
        `--reuid=${attacker.uid}`,
        `--regid=${attacker.gid}`,
        "--clear-groups",
        "sh",
        "-c",
        `while :; do mkdir -m 777 "$1" 2>/dev/null; rmdir "$1" 2>/dev/null; done`,
        "sh",
        contested,
      ],
      { stdio: "ignore", detached: true },
    );
    try {
      const ws = await workspaceOf(undefined, {});
      const secret = await secretFile(ws.dir, undefined, 0o600);
      await ws.writeConfig(serviceConfig(ws, secret, { netrc_path: join(contested, "netrc") }));
      const outcomes = new Map<string, number>();
      for (let i = 0; i < 30; i++) {
        const r = await runCli(ws, ["service-account", "-q"]);
        const st = await lstat(contested).catch(() => undefined);
        if (r.code === 0) {
          // Written: then the directory is ours, 0700, and it holds our netrc.
          assert.ok(st !== undefined && st.uid === 0 && (st.mode & 0o777) === 0o700, `run ${i}: ${r.stderr}`);
          outcomes.set(
            "written in our own directory",
            (outcomes.get("written in our own directory") ?? 0) + 1,
          );
          await rm(contested, { recursive: true, force: true });
        } else {
          // Refused, or failed because their directory went away under us: nothing written.
          const code =
            /^error: .*?(was created by someone else meanwhile|owned by uid|no such file or directory)/m.exec(
              r.stderr,
            );
          assert.ok(code !== null, `run ${i}: exit ${r.code}: ${r.stderr}`);
          outcomes.set("refused", (outcomes.get("refused") ?? 0) + 1);
        }
        // Never a netrc of ours in a directory of theirs.
        const netrc = await lstat(join(contested, "netrc")).catch(() => undefined);
        if (netrc !== undefined)
          assert.equal(st?.uid, 0, `run ${i}: our netrc in a directory of uid ${st?.uid}`);
      }
      console.log(`30 runs against a racing mkdir: ${JSON.stringify(Object.fromEntries(outcomes))}`);
    } finally {
      if (loop.pid !== undefined) process.kill(-loop.pid, "SIGKILL");
    }
  });
});

describe("a systemd service's dynamic user (the NixOS server module's unit runs as one)", () => {
  // What root meets with `sudo nix-cache-login status` on such a server: the state directory and
  // the netrc belong to the unit's dynamic uid (systemd.exec(5): 61184-65519).
  const SERVICE_UID = 61234;

  test("its state directory is refused with a hint to leave it to the service, never to remove it", async () => {
    const ws = await workspaceOf(undefined, {
      issuer: realm.issuer,
      client_id: "nix-cache",
      cache_host: CACHE_HOST,
    });
    await mkdir(ws.stateDir, { recursive: true, mode: 0o700 });
    await chown(ws.stateDir, SERVICE_UID, SERVICE_UID);
    const before = await snapshot(ws.dir);
    const r = await runCli(ws, ["status"]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^error: .*token state directory owned by uid 61234/m);
    assert.match(r.stderr, /^hint: uid 61234 is a systemd service's dynamic user: leave it to that service/m);
    assert.match(r.stderr, /journalctl -u nix-cache-login-server/);
    assert.doesNotMatch(r.stderr, /rm -r/);
    assert.deepEqual(await snapshot(ws.dir), before, "nothing changed");
  });

  test("its netrc is refused with the same hint", async () => {
    const ws = await workspaceOf(undefined, {
      issuer: realm.issuer,
      client_id: "nix-cache",
      cache_host: CACHE_HOST,
    });
    await mkdir(dirname(ws.netrcPath), { recursive: true, mode: 0o700 });
    await writeFile(ws.netrcPath, "", { mode: 0o600 });
    await chown(ws.netrcPath, SERVICE_UID, SERVICE_UID);
    const r = await runCli(ws, ["status"]);
    assert.match(r.stderr, /^error: netrc_path .*owned by uid 61234/m);
    assert.match(r.stderr, /^hint: uid 61234 is a systemd service's dynamic user: leave it to that service/m);
  });
});
