/**
 * Everyday use outside Nix, through the built CLI against the Keycloak-shaped realm on 127.0.0.1:
 * `timer install|remove|status` (the units checked as files, by systemd's own parser, and by
 * running the command they hold), `--json` and `--quiet`, `--min-valid` without a unit, `init`,
 * `login` while signed in (Chromium as the browser), and the line about a slow request on a
 * terminal.
 *
 * This machine has no systemd user manager (`systemctl --user` cannot connect), so the units are
 * not started here; the tests check that the CLI then prints the commands to run instead.
 */
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { existsSync, realpathSync } from "node:fs";
import { chmod, cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { StateStore } from "../../src/store/state.ts";
import { realmServiceWorkspace, realmUserWorkspace, seedSession } from "../support/realm-workspaces.ts";
import { writeState } from "../../src/store/write.ts";
import { requireChromium } from "../support/chromium.ts";
import { BROWSER_COMMAND, readDriverResult } from "../support/driver.ts";
import { CLI, makeWorkspace, netrcPassword, runCli, snapshot, type Workspace } from "../support/cli.ts";
import { requireNix } from "../support/nix.ts";
import { startRealm, type Realm } from "../support/realm.ts";

const run = promisify(execFile);
const HOST = "127.0.0.1";
let realm: Realm;
const workspaces: Workspace[] = [];

async function userWorkspace(extra: Record<string, unknown> = {}): Promise<Workspace> {
  const ws = await realmUserWorkspace(realm, HOST, extra);
  workspaces.push(ws);
  return ws;
}

async function serviceWorkspace(): Promise<Workspace> {
  const ws = await realmServiceWorkspace(realm, HOST);
  workspaces.push(ws);
  return ws;
}

const signIn = (ws: Workspace): Promise<string> => seedSession(ws, realm, { username: "alice" });

const json = (text: string) => JSON.parse(text) as Record<string, unknown>;
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;

before(async () => {
  realm = await startRealm();
});
after(async () => {
  await realm?.stop();
  for (const ws of workspaces) await ws.cleanup();
});

describe("--json and --quiet", () => {
  test("refresh --json: one object with what was done, expiries, netrc path and host", async () => {
    const ws = await userWorkspace();
    await signIn(ws);
    const res = await runCli(ws, ["refresh", "--json"]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stdout.trim().split("\n").length, 1, "one line of JSON");
    const out = json(res.stdout);
    assert.equal(out.command, "refresh");
    assert.equal(out.action, "renewed");
    assert.equal(out.host, HOST);
    assert.equal(out.netrc_path, ws.netrcPath);
    assert.equal(out.username, "alice");
    assert.match(String(out.access_token_expires_at), ISO);
    assert.match(String(out.refresh_token_expires_at), ISO);
    assert.equal(res.stderr, "", "--json prints no progress lines");
    assert.ok(netrcPassword(await readFile(ws.netrcPath, "latin1"), HOST) !== undefined);

    const fresh = await runCli(ws, ["refresh", "--min-valid", "1m", "--json"]);
    assert.equal(fresh.code, 0, fresh.stderr);
    assert.equal(json(fresh.stdout).action, "none");
    assert.equal(json(fresh.stdout).access_token_expires_at, out.access_token_expires_at);
  });

  test("refresh --quiet and service-account --quiet print nothing on success", async () => {
    const ws = await userWorkspace();
    await signIn(ws);
    const res = await runCli(ws, ["refresh", "--quiet"]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stdout + res.stderr, "");
    const sa = await serviceWorkspace();
    const q = await runCli(sa, ["service-account", "-q"]);
    assert.equal(q.code, 0, q.stderr);
    assert.equal(q.stdout + q.stderr, "");
  });

  test("service-account --json and logout --json", async () => {
    const sa = await serviceWorkspace();
    const res = await runCli(sa, ["service-account", "--json"]);
    assert.equal(res.code, 0, res.stderr);
    const out = json(res.stdout);
    assert.equal(out.command, "service-account");
    assert.equal(out.action, "renewed");
    assert.equal(out.refresh_token_expires_at, null);
    assert.match(String(out.access_token_expires_at), ISO);

    const ws = await userWorkspace();
    await signIn(ws);
    assert.equal((await runCli(ws, ["refresh", "-q"])).code, 0);
    const bye = await runCli(ws, ["logout", "--json"]);
    assert.equal(bye.code, 0, bye.stderr);
    const b = json(bye.stdout);
    assert.equal(b.action, "signed_out");
    assert.equal(b.revoked, true);
    assert.equal(b.removed_netrc_entry, true);
    assert.equal(b.host, HOST);
    const again = await runCli(ws, ["logout", "--json", "--quiet"]);
    assert.equal(again.code, 0);
    assert.equal(json(again.stdout).action, "none");
    assert.equal(again.stderr, "");
  });

  test("one duration rule: a bare number is refused with the same message by every option and key", async () => {
    const ws = await userWorkspace();
    await signIn(ws);
    const before = await snapshot(ws.home);
    const rule =
      "\\(a duration is a whole number with a unit \\(s, m, h or d\\), e\\.g\\. 30s, 10m, 1h30m\\)";
    const cases: [string[], string][] = [
      [["refresh", "--min-valid", "10"], "--min-valid"],
      [["service-account", "--min-valid", "10"], "--min-valid"],
      [["login", "--timeout", "10"], "--timeout"],
      [["timer", "install", "--interval", "10"], "--interval"],
      [["timer", "install", "--min-valid", "10"], "--min-valid"],
    ];
    for (const [args, what] of cases) {
      const res = await runCli(ws, args);
      assert.equal(res.code, 2, res.stderr);
      assert.match(
        res.stderr,
        new RegExp(`^error: ${what}: "10" has no unit: write 10s, 10m or 10h ${rule}\\n$`),
        args.join(" "),
      );
    }
    // The same rule in the configuration, for a TOML string and a TOML integer alike.
    for (const value of ['"10"', "10"]) {
      const config = join(ws.dir, "durations.toml");
      await writeFile(config, `${await readFile(ws.configPath, "utf8")}timeout = ${value}\n`);
      const res = await runCli(ws, ["status", "--config", config]);
      assert.equal(res.code, 2, res.stderr);
      assert.match(
        res.stderr,
        new RegExp(
          `^error: ${config.replace(/[.]/g, "\\.")}: timeout: "10" has no unit: write 10s, 10m or 10h ${rule}\\n`,
        ),
      );
      await rm(config);
    }
    assert.deepEqual(await snapshot(ws.home), before);
  });
});

// Errors under --json and usage errors are tested in-process (test/unit/run.test.ts).
describe("timer", () => {
  const unitDir = (ws: Workspace) => join(ws.env.XDG_CONFIG_HOME as string, "systemd", "user");

  async function verify(...files: string[]) {
    const r = await run("systemd-analyze", ["verify", "--man=no", ...files]).catch(
      (e: { code: number | string; stderr?: string }) => {
        if (e.code === "ENOENT")
          throw new Error("systemd-analyze is missing: apt-get install -y --no-install-recommends systemd");
        return { stdout: "", stderr: `exit ${e.code}: ${e.stderr}` };
      },
    );
    assert.equal(r.stderr, "", "systemd-analyze verify finds no problem");
  }

  /** Each of `lines` (regular expressions) matches a whole line of `unit`. */
  function assertLines(unit: string, lines: string[]): void {
    for (const line of lines) assert.match(unit, new RegExp(`^${line}$`, "m"));
  }

  /** ExecStart split as systemd splits it (double quotes, backslash escapes). */
  function execStart(unit: string): string[] {
    const line = /^ExecStart=(.*)$/m.exec(unit)?.[1] ?? "";
    return (line.match(/"(?:[^"\\]|\\.)*"|\S+/g) ?? []).map((w) =>
      w.startsWith('"') ? w.slice(1, -1).replace(/\\(.)/g, "$1").replace(/%%/g, "%") : w.replace(/%%/g, "%"),
    );
  }

  test("install writes a service and a timer that run this installation's refresh --min-valid", async () => {
    const ws = await userWorkspace();
    const before = await snapshot(ws.env.XDG_CONFIG_HOME as string);
    const res = await runCli(ws, ["timer", "install"]);
    assert.equal(res.code, 0, res.stderr);
    const service = await readFile(join(unitDir(ws), "nix-cache-login.service"), "utf8");
    const timer = await readFile(join(unitDir(ws), "nix-cache-login.timer"), "utf8");
    assert.deepEqual(execStart(service), [
      process.execPath,
      realpathSync(CLI),
      "refresh",
      "--min-valid",
      "4m",
    ]);
    assertLines(service, ["Type=oneshot", "SuccessExitStatus=3", "LimitCORE=0", "TimeoutStartSec=2min"]);
    assertLines(timer, [
      "OnCalendar=\\*-\\*-\\* \\*:00/2:00",
      "Persistent=true",
      "RandomizedDelaySec=30s",
      "WantedBy=timers.target",
    ]);
    await verify(join(unitDir(ws), "nix-cache-login.service"), join(unitDir(ws), "nix-cache-login.timer"));
    // No user manager here: the CLI says what to run.
    assert.match(
      res.stderr,
      /No systemd user manager is reachable from here; to start the timer, run in your session:\n {2}systemctl --user daemon-reload && systemctl --user enable --now nix-cache-login.timer\n/,
    );

    const status = await runCli(ws, ["timer", "status"]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /nix-cache-login\.service: installed\n/);
    assert.match(status.stdout, /nix-cache-login\.timer: installed\n/);
    assert.match(status.stdout, /runs: .* refresh --min-valid 4m\n/);
    // The unit's command, run with --dry-run: the configuration it will read is found and valid.
    assert.match(
      status.stdout,
      new RegExp(
        `dry run: ok, the configuration ${ws.configPath.replace(/[.]/g, "\\.")} \\(\\$XDG_CONFIG_HOME\\) is valid; nothing was sent or written\\.\n`,
      ),
    );

    // Idempotent: a second install changes nothing.
    const files = await snapshot(unitDir(ws));
    const again = await runCli(ws, ["timer", "install", "--quiet"]);
    assert.equal(again.code, 0, again.stderr);
    assert.doesNotMatch(again.stderr, /Wrote|Already/);
    assert.deepEqual(await snapshot(unitDir(ws)), files);

    const removed = await runCli(ws, ["timer", "remove"]);
    assert.equal(removed.code, 0, removed.stderr);
    assert.match(removed.stderr, /^Removed .*nix-cache-login\.service and .*nix-cache-login\.timer\.\n$/);
    assert.deepEqual(
      await snapshot(ws.env.XDG_CONFIG_HOME as string),
      before,
      "remove leaves nothing behind",
    );
    const none = await runCli(ws, ["timer", "remove"]);
    assert.equal(none.code, 0);
    assert.match(none.stderr, /nothing to remove/);
    const gone = await runCli(ws, ["timer", "status"]);
    assert.equal(gone.code, 1);
    assert.match(gone.stdout, /nix-cache-login\.timer: not installed/);
    assert.match(gone.stderr, /hint: run `nix-cache-login timer install`/);
  });

  test("the unit's command renews the token, and exits 3 (not a unit failure) when signed out", async () => {
    const dir = await makeWorkspace();
    workspaces.push(dir);
    // A config path with a blank, a quote and a percent sign: ExecStart must quote and escape it.
    const config = join(dir.dir, `my "odd" 100% config.toml`);
    await writeFile(
      config,
      `issuer = "${realm.issuer}"\nclient_id = "${realm.publicClientId}"\ncache_host = "${HOST}"\n`,
    );
    const res = await runCli(dir, [
      "timer",
      "install",
      "--interval",
      "5m",
      "--min-valid",
      "10m",
      "--config",
      config,
    ]);
    assert.equal(res.code, 0, res.stderr);
    const servicePath = join(unitDir(dir), "nix-cache-login.service");
    const service = await readFile(servicePath, "utf8");
    const argv = execStart(service);
    assert.deepEqual(argv.slice(2), ["refresh", "--min-valid", "10m", "--config", config]);
    assert.match(
      await readFile(join(unitDir(dir), "nix-cache-login.timer"), "utf8"),
      /^OnCalendar=\*-\*-\* \*:00\/5:00$/m,
    );
    await verify(servicePath, join(unitDir(dir), "nix-cache-login.timer"));

    const exec = (args: string[]) =>
      new Promise<{ code: number | null; stderr: string }>((resolve) => {
        const child = spawn(args[0] as string, args.slice(1), {
          env: dir.env,
          stdio: ["ignore", "ignore", "pipe"],
        });
        let stderr = "";
        child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
        child.on("close", (code) => resolve({ code, stderr }));
      });
    const status = await runCli(dir, ["timer", "status"]);
    assert.equal(status.code, 0, status.stdout + status.stderr);
    assert.ok(
      status.stdout.includes(`dry run: ok, the configuration ${config} (--config) is valid`),
      status.stdout,
    );
    const signedOut = await exec(argv);
    assert.equal(signedOut.code, 3, signedOut.stderr);
    assert.match(service, /^SuccessExitStatus=3$/m);

    const store = new StateStore(dir.stateDir, realm.issuer, realm.publicClientId);
    const tokens = await realm.signIn();
    dir.secrets.add(tokens.refresh_token as string);
    await mkdir(dir.stateDir, { recursive: true, mode: 0o700 });
    await writeState(store, { ...store.empty("user"), refresh_token: tokens.refresh_token as string });
    const renewed = await exec(argv);
    assert.equal(renewed.code, 0, renewed.stderr);
    assert.ok(
      netrcPassword(await readFile(dir.netrcPath, "latin1"), HOST) !== undefined,
      "the netrc has the token",
    );
  });

  test("the units docs/configure-nix.md gives for restarting Determinate Nixd are units systemd accepts", async () => {
    const doc = await readFile(join(dirname(CLI), "..", "docs", "configure-nix.md"), "utf8");
    const blocks = [...doc.matchAll(/```ini\n# \/etc\/systemd\/system\/(\S+)\n([\s\S]*?)```/g)];
    assert.deepEqual(
      blocks.map((b) => b[1]),
      ["nix-cache-login-determinate.path", "nix-cache-login-determinate.service"],
    );
    const dir = await mkdtemp(join(tmpdir(), "ncl-units-"));
    try {
      for (const [, name, text] of blocks) await writeFile(join(dir, name as string), text as string);
      await verify(...blocks.map((b) => join(dir, b[1] as string)));
      // The NixOS form of the same units is at least valid Nix (Debian's Nix parses it).
      const nixos = /On NixOS:\n\n```nix\n([\s\S]*?)```/.exec(doc)?.[1];
      assert.ok(nixos?.includes("systemd.paths.nix-cache-login-determinate"), "the NixOS form is there");
      await writeFile(join(dir, "determinate.nix"), nixos ?? "");
      requireNix();
      await promisify(execFile)("nix-instantiate", ["--parse", join(dir, "determinate.nix")]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("a package's launcher ($NIX_CACHE_LOGIN_LAUNCHER) is what the unit runs, at any path systemd can start", async () => {
    const ws = await userWorkspace();
    /** A wrapper as a package ships one: it starts this build's CLI with this Node.js. */
    const launcherIn = async (dir: string): Promise<string> => {
      await mkdir(dir, { recursive: true });
      const path = join(dir, "nix-cache-login");
      const q = (a: string) => `'${a.replace(/'/g, "'\\''")}'`;
      await writeFile(path, `#!/bin/sh\nexec ${q(process.execPath)} ${q(CLI)} "$@"\n`, { mode: 0o755 });
      return path;
    };
    const servicePath = join(unitDir(ws), "nix-cache-login.service");
    const installWith = (launcher: string, path?: string) =>
      runCli(ws, ["timer", "install"], {
        env: { NIX_CACHE_LOGIN_LAUNCHER: launcher, ...(path === undefined ? {} : { PATH: path }) },
      });

    // $ and % in the executable: systemd expands neither $$ nor variables there, only %%.
    const plain = await launcherIn(join(ws.dir, "pkg $HOME 100%"));
    const first = await installWith(plain);
    assert.equal(first.code, 0, first.stderr);
    const service = await readFile(servicePath, "utf8");
    assert.match(service, /^ExecStart="[^"]*\/pkg \$HOME 100%%\/nix-cache-login" refresh --min-valid 4m$/m);
    // systemd-analyze fails on an executable that does not exist.
    await verify(servicePath, join(unitDir(ws), "nix-cache-login.timer"));
    const status = await runCli(ws, ["timer", "status"]);
    assert.equal(status.code, 0, status.stdout + status.stderr);
    assert.match(status.stdout, /dry run: ok, the configuration .* is valid/);

    // Quotes and a backslash, which systemd refuses in an executable: started by /bin/sh (an `=`
    // in it would make env(1) take it for a variable).
    const odd = await launcherIn(join(ws.dir, `pkg "it's" a=b back\\slash`));
    const second = await installWith(odd);
    assert.equal(second.code, 0, second.stderr);
    const envService = await readFile(servicePath, "utf8");
    assert.deepEqual(execStart(envService).slice(0, 2), ["/bin/sh", "-c"]);
    assert.deepEqual(execStart(envService).slice(3, 5), [odd, "refresh"]);
    await verify(servicePath);
    const viaEnv = await runCli(ws, ["timer", "status"]);
    assert.equal(viaEnv.code, 0, viaEnv.stdout + viaEnv.stderr);
    assert.match(viaEnv.stdout, /dry run: ok/);
    await rm(odd);
    const stale = await runCli(ws, ["timer", "status"]);
    assert.equal(stale.code, 1);
    assert.ok(stale.stdout.includes(`stale: ${odd} no longer exists`), stale.stdout);

    // A command on PATH that is the same file (a profile's bin/) is named instead: it follows
    // upgrades, the package's own path does not.
    const bin = join(ws.dir, "profile", "bin");
    await mkdir(bin, { recursive: true });
    await symlink(plain, join(bin, "nix-cache-login"));
    const linked = await installWith(plain, `${bin}:${process.env.PATH ?? ""}`);
    assert.equal(linked.code, 0, linked.stderr);
    assert.deepEqual(execStart(await readFile(servicePath, "utf8")).slice(0, 2), [
      join(bin, "nix-cache-login"),
      "refresh",
    ]);

    // A launcher another user could change, or a relative one, is refused; the unit stays.
    const units = await snapshot(unitDir(ws));
    await chmod(plain, 0o777);
    const open = await installWith(plain);
    assert.equal(open.code, 2);
    assert.match(
      open.stderr,
      /^error: \$NIX_CACHE_LOGIN_LAUNCHER: .*\/nix-cache-login: is writable by group and others \(mode 0777\)\nhint: set it to the absolute path/,
    );
    const relative = await installWith("bin/nix-cache-login");
    assert.equal(relative.code, 2);
    assert.match(
      relative.stderr,
      /^error: \$NIX_CACHE_LOGIN_LAUNCHER: bin\/nix-cache-login: not an absolute path\n/,
    );
    assert.deepEqual(await snapshot(unitDir(ws)), units);
  });

  test("status reports units whose installation is gone; install again fixes them", async () => {
    const ws = await userWorkspace();
    // A copy of the built CLI, as an installation that is later removed or upgraded away.
    const copy = join(ws.dir, "old-install");
    await cp(dirname(CLI), copy, { recursive: true });
    const res = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [join(copy, "nix-cache-login.cjs"), "timer", "install"], {
        env: ws.env,
        stdio: ["ignore", "ignore", "pipe"],
      });
      let stderr = "";
      child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
      child.on("close", (code) => resolve({ code, stderr }));
    });
    assert.equal(res.code, 0, res.stderr);
    assert.equal((await runCli(ws, ["timer", "status"])).code, 0);
    await rm(copy, { recursive: true });
    const stale = await runCli(ws, ["timer", "status"]);
    assert.equal(stale.code, 1);
    assert.match(
      stale.stdout,
      new RegExp(`stale: ${join(copy, "nix-cache-login.cjs").replace(/[.]/g, "\\.")} no longer exists`),
    );
    assert.match(stale.stderr, /hint: run `nix-cache-login timer install`/);
    const again = await runCli(ws, ["timer", "install", "-q"]);
    assert.equal(again.code, 0, again.stderr);
    const fixed = await runCli(ws, ["timer", "status"]);
    assert.equal(fixed.code, 0, fixed.stdout);
    assert.match(fixed.stdout, new RegExp(`runs: .*${realpathSync(CLI).replace(/[.]/g, "\\.")} refresh`));
  });

  test("status runs the unit's command with --dry-run: a configuration broken since install is found", async () => {
    const ws = await userWorkspace();
    const res = await runCli(ws, ["timer", "install", "-q"]);
    assert.equal(res.code, 0, res.stderr);
    await writeFile(ws.configPath, `${await readFile(ws.configPath, "utf8")}timeout = 30\n`);
    const before = await snapshot(ws.home);
    const status = await runCli(ws, ["timer", "status"]);
    assert.equal(status.code, 1, status.stdout);
    assert.ok(
      status.stdout.includes(
        `dry run: the unit's command fails (exit 2): ${ws.configPath}: timeout: "30" has no unit: write 30s, 30m or 30h`,
      ),
      status.stdout,
    );
    assert.match(status.stderr, /^hint: fix what the dry run names/m);
    assert.deepEqual(await snapshot(ws.home), before, "the dry run writes nothing");
  });

  test("install --system (root) writes system units that run service-account", async () => {
    assert.equal(process.getuid?.(), 0, "this test runs as root, as CI does");
    // A system unit has no $HOME: the default netrc_path ($XDG_CONFIG_HOME/nix/netrc) cannot work there.
    const homeOnly = await serviceWorkspace();
    const unitsOfHomeOnly = join(homeOnly.dir, "system-units");
    const needsHome = await runCli(
      homeOnly,
      ["timer", "install", "--system", "--config", homeOnly.configPath],
      {
        env: { NIX_CACHE_LOGIN_SYSTEM_UNIT_DIR: unitsOfHomeOnly },
      },
    );
    assert.equal(needsHome.code, 2, needsHome.stderr);
    assert.match(
      needsHome.stderr,
      /^error: --system: .*config\.toml needs \$HOME, which a system unit does not have .*\nhint: set netrc_path to an absolute path/,
    );
    assert.ok(!existsSync(unitsOfHomeOnly), "nothing written");

    const sa = await realmServiceWorkspace(realm, HOST);
    workspaces.push(sa);
    await writeFile(
      sa.configPath,
      `${await readFile(sa.configPath, "utf8")}netrc_path = "${sa.netrcPath}"\n`,
    );
    const dir = join(sa.dir, "system-units");
    const env = { NIX_CACHE_LOGIN_SYSTEM_UNIT_DIR: dir, NIX_CACHE_LOGIN_CONFIG: sa.configPath };
    const res = await runCli(sa, ["timer", "install", "--system"], { env });
    assert.equal(res.code, 0, res.stderr);
    const service = await readFile(join(dir, "nix-cache-login-server.service"), "utf8");
    assert.deepEqual(execStart(service).slice(2), [
      "service-account",
      "--min-valid",
      "4m",
      "--config",
      sa.configPath,
    ]);
    assertLines(service, [
      "SuccessExitStatus=3",
      "LimitCORE=0",
      "StateDirectory=nix-cache-login",
      "Environment=XDG_STATE_HOME=/var/lib",
    ]);
    assert.match(
      await readFile(join(dir, "nix-cache-login-server.timer"), "utf8"),
      /^RandomizedDelaySec=15s$/m,
    );
    await verify(join(dir, "nix-cache-login-server.service"), join(dir, "nix-cache-login-server.timer"));
    const status = await runCli(sa, ["timer", "status", "--system"], { env });
    assert.equal(status.code, 0, status.stdout + status.stderr);
    assert.ok(
      status.stdout.includes(
        `dry run: ok, the configuration ${sa.configPath} (--config) is valid, and its client_secret_file is readable`,
      ),
      status.stdout,
    );
    const removed = await runCli(sa, ["timer", "remove", "--system"], { env });
    assert.equal(removed.code, 0, removed.stderr);
    assert.deepEqual(await snapshot(dir), new Map());

    const user = await userWorkspace();
    const refused = await runCli(user, ["timer", "install", "--system", "--config", user.configPath], {
      env: { NIX_CACHE_LOGIN_SYSTEM_UNIT_DIR: dir },
    });
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /--system needs a service-account configuration/);

    // Without --config the system unit reads /etc/nix-cache-login/config.toml, not the caller's
    // ~/.config: a service account configured only there is refused, and nothing is written.
    assert.ok(!existsSync("/etc/nix-cache-login/config.toml"), "this machine has no system configuration");
    const own = await serviceWorkspace();
    const noSystemConfig = await runCli(own, ["timer", "install", "--system"], {
      env: { NIX_CACHE_LOGIN_SYSTEM_UNIT_DIR: dir },
    });
    assert.equal(noSystemConfig.code, 2, noSystemConfig.stderr);
    assert.match(
      noSystemConfig.stderr,
      /^error: --system: the system unit reads \/etc\/nix-cache-login\/config\.toml \(no --config was given\), and it does not exist\nhint: .*timer install --system --config PATH/,
    );
    assert.deepEqual(await snapshot(dir), new Map(), "no unit written");
  });
});

describe("init", () => {
  test("writes a configuration that login loads, after checking the issuer's discovery", async () => {
    const ws = await makeWorkspace();
    workspaces.push(ws);
    const init = [
      "init",
      "--issuer",
      realm.issuer,
      "--client-id",
      realm.publicClientId,
      "--cache-host",
      HOST,
    ];
    const res = await runCli(ws, init);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stderr, new RegExp(`^Wrote ${ws.configPath.replace(/[.]/g, "\\.")} `));
    assert.match(res.stderr, /Next: `nix-cache-login login`, then `nix-cache-login timer install`/);
    const status = await runCli(ws, ["status", "--json"]);
    const report = json(status.stdout);
    assert.equal(report.issuer, realm.issuer);
    assert.equal(report.client_id, realm.publicClientId);
    assert.equal(report.cache_host, HOST);
    assert.equal(report.config_path, ws.configPath);

    // Again, for another client: refused without --force.
    const again = (...force: string[]) =>
      runCli(ws, ["init", "--issuer", realm.issuer, "--client-id", "x", "--cache-host", HOST, ...force]);
    const twice = await again();
    assert.equal(twice.code, 2);
    assert.match(twice.stderr, /exists already\nhint: .*--force/);
    // The provider does not know client "x": init says so (as login would, before a browser), and
    // leaves the file as it was.
    const written = await readFile(ws.configPath, "utf8");
    const unknown = await again("--force");
    assert.equal(unknown.code, 2, unknown.stderr);
    assert.match(
      unknown.stderr,
      /^error: 127\.0\.0\.1:\d+ does not know the client "x" \(--client-id\): its authorization endpoint answers HTTP 400\nhint: check --client-id against/,
    );
    assert.equal(await readFile(ws.configPath, "utf8"), written);

    // --cache-url: where doctor asks the cache, when it is not https://HOST.
    const withCacheUrl = (url: string) => runCli(ws, [...init, "--force", "--cache-url", url]);
    const forced = await withCacheUrl(`http://${HOST}:8080/nix`);
    assert.equal(forced.code, 0, forced.stderr);
    assert.match(forced.stderr, /answers with its discovery document and knows client_id nix-cache\)/);
    assert.match(
      await readFile(ws.configPath, "utf8"),
      new RegExp(`^cache_url = "http://${HOST}:8080/nix"$`, "m"),
    );
    assert.equal((await runCli(ws, ["status", "--json"])).code, 3, "the configuration loads (not signed in)");
    const badUrl = await withCacheUrl("https://elsewhere.example.org/");
    assert.equal(badUrl.code, 2, badUrl.stderr);
    assert.match(
      badUrl.stderr,
      /cache_url: host elsewhere\.example\.org does not match cache_host 127\.0\.0\.1/,
    );
  });

  test("refuses an issuer without discovery, writing nothing (bad values and missing flags: test/unit/run.test.ts)", async () => {
    const ws = await makeWorkspace();
    workspaces.push(ws);
    const noDiscovery = await runCli(ws, [
      "init",
      "--issuer",
      `${realm.issuer}-nope`,
      "--client-id",
      "c",
      "--cache-host",
      HOST,
    ]);
    // A 404 for the discovery document means the issuer URL is wrong: a usage error.
    assert.equal(noDiscovery.code, 2, noDiscovery.stderr);
    assert.match(noDiscovery.stderr, /--issuer .*-nope: no OpenID Connect discovery document there/);
    assert.ok(!existsSync(ws.configPath), "nothing written");
  });
});

describe("a request slower than a second", () => {
  // A CLI that never says it is waiting would leave both runs hanging: the timeout ends the test.
  test('says "waiting for HOST ..." on a terminal only', { timeout: 60_000 }, async () => {
    const ws = await makeWorkspace();
    workspaces.push(ws);
    // An issuer that answers only once the terminal run has said it is waiting: no timing guess.
    const held: http.ServerResponse[] = [];
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const server = http.createServer((_req, res) => {
      held.push(res);
      void released.then(() => res.writeHead(404).end("not here"));
    });
    await new Promise<void>((r) => server.listen(0, HOST, r));
    const port = (server.address() as AddressInfo).port;
    try {
      const args = [
        "init",
        "--issuer",
        `http://${HOST}:${port}/realms/slow`,
        "--client-id",
        "c",
        "--cache-host",
        HOST,
      ];
      // Started first, so it has waited at least as long as the terminal run when both are released.
      const piped = runCli(ws, args);
      const quoted = [process.execPath, CLI, ...args].map((a) => `'${a}'`).join(" ");
      const tty = spawn("script", ["-qfec", quoted, "/dev/null"], {
        env: ws.env,
        stdio: ["ignore", "pipe", "pipe"],
      });
      let ttyOut = "";
      const waiting = new RegExp(`waiting for ${HOST}:${port} \\.\\.\\.`);
      tty.stdout.setEncoding("utf8").on("data", (d: string) => {
        ttyOut += d;
        if (waiting.test(ttyOut)) release();
      });
      const ttyCode = await new Promise<number | null>((resolve) => tty.on("close", resolve));
      const pipedRes = await piped;
      assert.match(ttyOut, waiting);
      // The slow server finally answers 404: a wrong issuer URL, a usage error.
      assert.equal(ttyCode, 2, ttyOut);
      assert.equal(pipedRes.code, 2, pipedRes.stderr);
      assert.doesNotMatch(pipedRes.stderr, /waiting for/, "not on a pipe");
      assert.ok(held.length >= 2);
    } finally {
      release();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});

describe("the rough edges a new user hit (issue 24)", () => {
  test("broken TOML names the file, line and column, with a hint", async () => {
    const ws = await userWorkspace();
    await writeFile(ws.configPath, 'issuer = "https://sso.example.org/realms/nix\nclient_id = "nix-cache"\n');
    const res = await runCli(ws, ["status"]);
    assert.equal(res.code, 2, res.stderr);
    assert.equal(
      res.stderr,
      `error: ${ws.configPath}: line 1, column 45: invalid TOML: a string is not closed before the end of the line\nhint: add the closing quote on line 1 (each line is KEY = VALUE, strings in double quotes: client_id = "nix-cache")\nsee: docs/configuration.md\n`,
    );
  });

  test("refresh --min-valid says in one line that the token stays valid until when; nothing with --quiet", async () => {
    const ws = await userWorkspace();
    await signIn(ws);
    assert.equal((await runCli(ws, ["refresh", "-q"])).code, 0);
    const state = await new StateStore(ws.stateDir, realm.issuer, realm.publicClientId).read();
    const until = String(state?.access_token_expires_at).replace(/\.\d{3}Z$/, "Z");
    const fresh = await runCli(ws, ["refresh", "--min-valid", "1m"]);
    assert.equal(fresh.code, 0, fresh.stderr);
    assert.equal(
      fresh.stderr,
      `The access token stays valid until ${until}, more than --min-valid 1m: nothing to do.\n`,
    );
    const quiet = await runCli(ws, ["refresh", "--min-valid", "1m", "--quiet"]);
    assert.equal(quiet.code, 0, quiet.stderr);
    assert.equal(quiet.stderr, "");
  });

  test("a netrc directory that does not exist is created, and that is said on stderr", async () => {
    const ws = await userWorkspace();
    const netrc = join(ws.dir, "typo-dir", "nix", "netrc");
    await writeFile(ws.configPath, `${await readFile(ws.configPath, "utf8")}netrc_path = "${netrc}"\n`);
    await signIn(ws);
    const res = await runCli(ws, ["refresh"]);
    assert.equal(res.code, 0, res.stderr);
    assert.ok(
      res.stderr.includes(
        `Created the directory ${join(ws.dir, "typo-dir")} for the netrc ${netrc} (netrc_path in ${ws.configPath}).\n`,
      ),
      res.stderr,
    );
    assert.ok(existsSync(netrc));
    const again = await runCli(ws, ["refresh"]);
    assert.equal(again.code, 0, again.stderr);
    assert.doesNotMatch(again.stderr, /Created the directory/);
  });

  test("login after the provider ended the session offers no renewal time", async () => {
    const ws = await userWorkspace();
    await signIn(ws);
    assert.equal((await runCli(ws, ["refresh", "-q"])).code, 0);
    await realm.revokeAllSessions();
    const ended = await runCli(ws, ["refresh", "--min-valid", "1d"]);
    assert.equal(ended.code, 3, ended.stderr);
    const res = await runCli(ws, ["login", "--no-browser", "--timeout", "1s"]);
    assert.equal(res.code, 1, res.stderr);
    assert.match(
      res.stderr,
      /^Already signed in as alice at .*, the provider ended the session \(seen at \d{4}-[^)]*\)\. Starting a new sign-in/m,
    );
    assert.doesNotMatch(res.stderr, /can be renewed until/);
  });
});

describe("login while signed in", () => {
  test("says who is signed in and until when before a new sign-in; login --json", async () => {
    requireChromium();
    const ws = await userWorkspace();
    await signIn(ws);
    assert.equal((await runCli(ws, ["refresh", "-q"])).code, 0);
    const state = json(
      await readFile(
        join(
          ws.stateDir,
          (await import("node:fs/promises").then((f) => f.readdir(ws.stateDir))).find((f) =>
            f.endsWith(".json"),
          ) as string,
        ),
        "utf8",
      ),
    );
    const driverResult = join(ws.dir, "driver.json");
    const res = await runCli(ws, ["login", "--json", "--browser-command", BROWSER_COMMAND], {
      env: { DRIVER_MODE: "login", DRIVER_RESULT: driverResult },
      timeoutMs: 90_000,
    });
    // The CLI does not wait for its browser: the driver is done (Chromium gone) before the test ends.
    assert.equal((await readDriverResult(driverResult)).ok, true);
    assert.equal(res.code, 0, res.stderr);
    const expires = String(state.access_token_expires_at);
    const already = res.stderr.indexOf("Already signed in as alice at ");
    assert.ok(already >= 0, res.stderr);
    assert.ok(already < res.stderr.indexOf("Opening a browser"), "before the new sign-in starts");
    assert.match(
      res.stderr,
      new RegExp(
        `access token valid, expires in .* \\(${expires.replace(/\.\d{3}Z$/, "Z").replace(/[.]/g, "\\.")}\\), the session can be renewed until \\d{4}-`,
      ),
    );
    const out = json(res.stdout);
    assert.equal(out.command, "login");
    assert.equal(out.action, "signed_in");
    assert.equal(out.username, "alice");
    assert.equal(out.netrc_path, ws.netrcPath);
    assert.match(String(out.access_token_expires_at), ISO);
  });
});
