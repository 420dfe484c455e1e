// The timer's unit files as text: the systemd calendar form of an interval (as nix/modules/lib.nix
// computes it), ExecStart quoting, and the macOS launchd plist (which cannot be loaded on this
// Linux machine, so it is parsed with Python's plistlib, the format's reference reader here).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { test } from "node:test";
import {
  launchdCommand,
  launchdPlist,
  onCalendar,
  programFiles,
  systemdCommand,
  systemdUnits,
  type TimerSpec,
} from "../../src/timer/units.ts";
import { blamed } from "../../src/oidc/client-check.ts";

const spec = (over: Partial<TimerSpec> = {}): TimerSpec => ({
  system: false,
  program: ["/usr/bin/node", "/usr/lib/node_modules/nix-cache-login/dist/nix-cache-login.cjs"],
  configPath: undefined,
  interval: "2m",
  intervalSeconds: 120,
  minValid: "4m",
  randomizedDelay: "30s",
  home: "/home/alice",
  ...over,
});

/** A plist as JSON, read by Python's plistlib. */
function parsePlist(text: string | undefined): unknown {
  let json: string;
  try {
    json = execFileSync(
      "python3",
      ["-c", "import json, plistlib, sys; print(json.dumps(plistlib.loads(sys.stdin.buffer.read())))"],
      { input: text },
    ).toString();
  } catch (e) {
    if ((e as { code?: unknown }).code === "ENOENT")
      throw new Error("python3 is missing: apt-get install -y --no-install-recommends python3", { cause: e });
    throw e;
  }
  return JSON.parse(json);
}

test("onCalendar matches the Nix modules: only intervals that divide a minute, an hour or a day", () => {
  assert.equal(onCalendar(30), "*-*-* *:*:00/30");
  assert.equal(onCalendar(120), "*-*-* *:00/2:00");
  assert.equal(onCalendar(900), "*-*-* *:00/15:00");
  assert.equal(onCalendar(3600), "*-*-* 00/1:00:00");
  assert.equal(onCalendar(6 * 3600), "*-*-* 00/6:00:00");
  for (const bad of [0, 7, 420, 45 * 60, 5 * 3600, 2 * 86400])
    assert.equal(onCalendar(bad), undefined, String(bad));
});

test("ExecStart quotes paths with blanks and escapes quotes, backslashes, % and $", () => {
  const [service] = systemdUnits(
    spec({
      program: ["/opt/my node/bin/node", "/usr/lib/node_modules/nix-cache-login/dist/nix-cache-login.cjs"],
      configPath: '/home/a/"x" 100% $HOME\\c.toml',
    }),
    "/u",
  );
  const line = /^ExecStart=(.*)$/m.exec(service?.text ?? "")?.[1];
  assert.equal(
    line,
    `"/opt/my node/bin/node" /usr/lib/node_modules/nix-cache-login/dist/nix-cache-login.cjs refresh --min-valid 4m --config "/home/a/\\"x\\" 100%% $$HOME\\\\c.toml"`,
  );
  assert.throws(() => systemdUnits(spec({ configPath: "/a\nb" }), "/u"), /line break/);
});

test("an executable path systemd would refuse (quote, backslash) runs through env; its $ is not doubled", () => {
  const execLine = (program: string[]) =>
    /^ExecStart=(.*)$/m.exec(systemdUnits(spec({ program }), "/u")[0]?.text ?? "")?.[1];
  // systemd expands $$ in arguments only: in the executable it would stay $$ (a path that does
  // not exist).
  assert.equal(
    execLine(["/opt/a$b/node", "/opt/a$b/cli.cjs"]),
    `"/opt/a$b/node" "/opt/a$$b/cli.cjs" refresh --min-valid 4m`,
  );
  assert.equal(
    execLine(["/opt/100%/nix-cache-login"]),
    `"/opt/100%%/nix-cache-login" refresh --min-valid 4m`,
  );
  // `=` too: env(1) would take such a path for a variable, the shell's $0 takes it as it is.
  for (const odd of [
    '/opt/q"uote/node',
    "/opt/it's/a=b/node",
    "/opt/back\\slash/node",
    "/opt/tab\there/node",
  ]) {
    const line = execLine([odd, "/opt/cli.cjs"]) ?? "";
    assert.ok(line.startsWith(`/bin/sh -c "exec \\"$$0\\" \\"$$@\\"" "`), line);
    const argv = systemdCommand(`ExecStart=${line}\n`).argv;
    assert.deepEqual(argv.slice(0, 5), ["/bin/sh", "-c", 'exec "$0" "$@"', odd, "/opt/cli.cjs"]);
    assert.deepEqual(programFiles(argv), [odd, "/opt/cli.cjs"]);
  }
  assert.deepEqual(programFiles(["/nix/store/x/bin/nix-cache-login", "refresh", "--config", "/c.toml"]), [
    "/nix/store/x/bin/nix-cache-login",
  ]);
});

test("the launchd agent runs refresh --min-valid every interval, at load, without core dumps", () => {
  const [file] = launchdPlist(
    spec({ configPath: "/Users/alice/a & b.toml" }),
    "/Users/alice/Library/LaunchAgents",
  );
  assert.equal(file?.path, "/Users/alice/Library/LaunchAgents/nix-cache-login.plist");
  const parsed = parsePlist(file?.text) as Record<string, unknown>;
  assert.deepEqual(parsed, {
    Label: "nix-cache-login",
    ProgramArguments: [
      "/usr/bin/node",
      "/usr/lib/node_modules/nix-cache-login/dist/nix-cache-login.cjs",
      "refresh",
      "--min-valid",
      "4m",
      "--config",
      "/Users/alice/a & b.toml",
    ],
    StartInterval: 120,
    RunAtLoad: true,
    ProcessType: "Background",
    Umask: 63,
    SoftResourceLimits: { Core: 0 },
    HardResourceLimits: { Core: 0 },
    StandardErrorPath: "/home/alice/Library/Logs/nix-cache-login.log",
  });
});

test("the launchd daemon (--system) runs service-account with the system configuration", () => {
  const [file] = launchdPlist(spec({ system: true }), "/Library/LaunchDaemons");
  assert.equal(file?.path, "/Library/LaunchDaemons/nix-cache-login-server.plist");
  const parsed = parsePlist(file?.text) as {
    ProgramArguments: string[];
    EnvironmentVariables: Record<string, string>;
  };
  assert.deepEqual(parsed.ProgramArguments.slice(2), ["service-account", "--min-valid", "4m"]);
  assert.deepEqual(parsed.EnvironmentVariables, {
    NIX_CACHE_LOGIN_CONFIG: "/etc/nix-cache-login/config.toml",
    XDG_STATE_HOME: "/var/db",
  });
});

test("timer status reads back the command and environment a unit was written with (systemd and launchd)", () => {
  const odd = `/home/alice/my "odd" 100% $HOME & <co>nfig\\.toml`;
  for (const system of [false, true]) {
    const s = spec({ system, configPath: odd, program: ["/usr/bin/node", "/opt/nix cache/cli.cjs"] });
    const argv = [
      "/usr/bin/node",
      "/opt/nix cache/cli.cjs",
      system ? "service-account" : "refresh",
      "--min-valid",
      "4m",
      "--config",
      odd,
    ];
    const [service] = systemdUnits(s, "/etc/systemd/system");
    assert.deepEqual(systemdCommand(service?.text ?? "").argv, argv);
    const [plist] = launchdPlist(s, "/Library/LaunchDaemons");
    const read = launchdCommand(plist?.text ?? "");
    // The plist's environment strings are not arguments.
    assert.deepEqual(read.argv, argv);
    assert.deepEqual(read.environment, system ? { XDG_STATE_HOME: "/var/db" } : {});
  }
  const [service] = systemdUnits(spec({ system: true }), "/etc/systemd/system");
  assert.deepEqual(systemdCommand(service?.text ?? "").environment, {
    NIX_CACHE_LOGIN_CONFIG: "/etc/nix-cache-login/config.toml",
    XDG_STATE_HOME: "/var/lib",
  });
});

test("the client check tells which parameter an authorization error page blames", () => {
  // Keycloak 26's pages (theme "keycloak.v2": the message in a kc-error-message element).
  assert.equal(
    blamed('<div id="kc-error-message"><p class="instruction">Client not found.</p></div>'),
    "client_id",
  );
  assert.equal(blamed("<p>Invalid parameter: redirect_uri</p>"), "redirect_uri");
  // OAuth's words, as other providers show them.
  assert.equal(blamed("<p>error: invalid_client</p>"), "client_id");
  assert.equal(blamed("<p>error: invalid_redirect_uri</p>"), "redirect_uri");
  assert.equal(blamed("<h1>Something went wrong</h1>"), undefined);
});
