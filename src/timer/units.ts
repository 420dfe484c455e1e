/**
 * The files a timer is made of, as text: systemd units (a service and its calendar timer) or a
 * launchd plist. They follow the Nix modules (nix/modules/lib.nix): a calendar timer with
 * Persistent=true (a run missed while asleep or off happens on wake-up), a randomized delay, a
 * start timeout, and exit 3 (sign in again) is not a unit failure.
 */
import { join } from "node:path";
import { SYSTEM_CONFIG } from "../config/find.ts";
import { CliError, ExitCode } from "../errors.ts";

/** Every file `timer install` writes carries this: only such files are ever replaced or removed. */
export const MARKER = "Written by `nix-cache-login timer install`";

/** What a timer runs, and how often. */
export interface TimerSpec {
  system: boolean;
  /**
   * The absolute paths that start the CLI: Node.js and the script, or one launcher (a package's
   * wrapper, $NIX_CACHE_LOGIN_LAUNCHER).
   */
  program: string[];
  configPath: string | undefined;
  interval: string;
  intervalSeconds: number;
  minValid: string;
  randomizedDelay: string;
  home: string;
}

export interface TimerFile {
  path: string;
  text: string;
}

/**
 * The calendar expression that fires every `seconds` (as nix/modules/lib.nix's onCalendar):
 * only intervals that divide a minute, an hour or a day evenly have one.
 */
export function onCalendar(seconds: number): string | undefined {
  if (seconds > 0 && seconds < 60 && 60 % seconds === 0) return `*-*-* *:*:00/${seconds}`;
  if (seconds >= 60 && seconds < 3600 && seconds % 60 === 0 && 60 % (seconds / 60) === 0)
    return `*-*-* *:00/${seconds / 60}:00`;
  if (seconds >= 3600 && seconds <= 86400 && seconds % 3600 === 0 && 24 % (seconds / 3600) === 0)
    return `*-*-* 00/${seconds / 3600}:00:00`;
  return undefined;
}

/**
 * systemd refuses an executable path with a quote, a backslash or a control character
 * (string_is_safe() in its src/basic/string-util.c, checked by config_parse_exec()): such a
 * program is started by /bin/sh, as `$0` of a fixed script, so its path is an argument, which
 * systemd unquotes like any other. (Not env(1): it would take a path with `=` for a variable.)
 */
const VIA_SHELL = ["/bin/sh", "-c", 'exec "$0" "$@"'];
const UNSAFE_EXECUTABLE = /["'\\\p{Cc}]/u;
/**
 * One word of ExecStart, quoted, `%` (specifiers) escaped everywhere. `$` is escaped as `$$` in
 * the arguments only: systemd expands variables in the arguments, never in the executable path.
 */
function systemdArg(arg: string, executable: boolean): string {
  if (/[\n\r]/.test(arg)) {
    throw new CliError(
      "unit_path_line_break",
      `cannot put a path with a line break in a unit: ${JSON.stringify(arg)}`,
      {
        exitCode: ExitCode.usage,
      },
    );
  }
  if (/^[A-Za-z0-9_./:=@+-]+$/.test(arg)) return arg.replace(/%/g, "%%");
  const dollar = executable ? "$" : "$$$$";
  return `"${arg.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/%/g, "%%").replace(/\$/g, dollar)}"`;
}

function command(spec: TimerSpec): string[] {
  return [
    ...spec.program,
    spec.system ? "service-account" : "refresh",
    "--min-valid",
    spec.minValid,
    ...(spec.configPath === undefined ? [] : ["--config", spec.configPath]),
  ];
}

function execStart(argv: string[]): string {
  const words = UNSAFE_EXECUTABLE.test(argv[0] ?? "") ? [...VIA_SHELL, ...argv] : argv;
  return words.map((w, i) => systemdArg(w, i === 0)).join(" ");
}

/** The files a unit's command starts from: its leading absolute paths (after /bin/sh's script). */
export function programFiles(argv: readonly string[]): string[] {
  const words = VIA_SHELL.every((w, i) => argv[i] === w) ? argv.slice(VIA_SHELL.length) : argv;
  const end = words.findIndex((w) => !w.startsWith("/"));
  return words.slice(0, end === -1 ? words.length : end);
}

export function systemdUnits(spec: TimerSpec, dir: string): TimerFile[] {
  const base = spec.system ? "nix-cache-login-server" : "nix-cache-login";
  const header = `# ${MARKER}; \`nix-cache-login timer remove${spec.system ? " --system" : ""}\` removes it.\n`;
  const what = spec.system ? "service-account token" : "token";
  const service = [
    header,
    "[Unit]",
    `Description=Renew the ${what} for the Nix binary cache (nix-cache-login)`,
    "Documentation=man:nix-cache-login(1)",
    "Wants=network-online.target",
    "After=network-online.target",
    "",
    "[Service]",
    "Type=oneshot",
    `ExecStart=${execStart(command(spec))}`,
    "# Exit 3 means: sign in again (`nix-cache-login status` says so). Not a unit failure.",
    "SuccessExitStatus=3",
    "TimeoutStartSec=2min",
    "# A core dump would hold the tokens.",
    "LimitCORE=0",
    "UMask=0077",
    "Nice=10",
    ...(spec.system
      ? [
          ...(spec.configPath === undefined ? [`Environment=NIX_CACHE_LOGIN_CONFIG=${SYSTEM_CONFIG}`] : []),
          "Environment=XDG_STATE_HOME=/var/lib",
          "StateDirectory=nix-cache-login",
          "StateDirectoryMode=0700",
          "NoNewPrivileges=yes",
          "PrivateTmp=yes",
        ]
      : []),
    "",
  ].join("\n");
  const timer = [
    header,
    "[Unit]",
    `Description=Keep the ${what} for the Nix binary cache fresh (nix-cache-login)`,
    "",
    "[Timer]",
    `OnCalendar=${onCalendar(spec.intervalSeconds) ?? ""}`,
    "# A run missed while the machine was off or asleep happens as soon as it is back.",
    "Persistent=true",
    `RandomizedDelaySec=${spec.randomizedDelay}`,
    "AccuracySec=1s",
    "",
    "[Install]",
    "WantedBy=timers.target",
    "",
  ].join("\n");
  return [
    { path: join(dir, `${base}.service`), text: service },
    { path: join(dir, `${base}.timer`), text: timer },
  ];
}

export const LAUNCHD_LABEL = { user: "nix-cache-login", system: "nix-cache-login-server" };

function xml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

export function launchdPlist(spec: TimerSpec, dir: string): TimerFile[] {
  const label = spec.system ? LAUNCHD_LABEL.system : LAUNCHD_LABEL.user;
  const log = spec.system
    ? "/var/log/nix-cache-login-server.log"
    : join(spec.home, "Library/Logs/nix-cache-login.log");
  const env = spec.system
    ? [
        "  <key>EnvironmentVariables</key>",
        "  <dict>",
        ...(spec.configPath === undefined
          ? ["    <key>NIX_CACHE_LOGIN_CONFIG</key>", `    <string>${SYSTEM_CONFIG}</string>`]
          : []),
        "    <key>XDG_STATE_HOME</key>",
        "    <string>/var/db</string>",
        "  </dict>",
      ]
    : [];
  const text = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">',
    // No "--" in an XML comment.
    `<!-- ${MARKER}; \`nix-cache-login timer remove\`${spec.system ? " (as root, for the daemon)" : ""} removes it. -->`,
    '<plist version="1.0">',
    "<dict>",
    "  <key>Label</key>",
    `  <string>${label}</string>`,
    "  <key>ProgramArguments</key>",
    "  <array>",
    ...command(spec).map((a) => `    <string>${xml(a)}</string>`),
    "  </array>",
    ...env,
    "  <!-- launchd runs a job whose interval passed during sleep as soon as the Mac wakes. -->",
    "  <key>StartInterval</key>",
    `  <integer>${spec.intervalSeconds}</integer>`,
    "  <key>RunAtLoad</key>",
    "  <true/>",
    "  <key>ProcessType</key>",
    "  <string>Background</string>",
    "  <key>Umask</key>",
    "  <integer>63</integer>",
    "  <!-- A core dump would hold the tokens. -->",
    "  <key>SoftResourceLimits</key>",
    "  <dict>",
    "    <key>Core</key>",
    "    <integer>0</integer>",
    "  </dict>",
    "  <key>HardResourceLimits</key>",
    "  <dict>",
    "    <key>Core</key>",
    "    <integer>0</integer>",
    "  </dict>",
    "  <key>StandardErrorPath</key>",
    `  <string>${xml(log)}</string>`,
    "</dict>",
    "</plist>",
    "",
  ].join("\n");
  return [{ path: join(dir, `${label}.plist`), text }];
}

/** What a unit runs: its argv and the variables it sets, as the service manager reads them. */
export interface UnitCommand {
  argv: string[];
  environment: Record<string, string>;
}

/** ExecStart and Environment= as systemd splits them: the reverse of systemdArg. */
export function systemdCommand(text: string): UnitCommand {
  const line = /^ExecStart=(.*)$/m.exec(text)?.[1] ?? "";
  const argv = (line.match(/"(?:[^"\\]|\\.)*"|\S+/g) ?? []).map((w, i) => {
    const word = w.startsWith('"') ? w.slice(1, -1).replace(/\\(.)/g, "$1") : w;
    return (i === 0 ? word : word.replace(/\$\$/g, "$")).replace(/%%/g, "%");
  });
  const environment: Record<string, string> = {};
  for (const m of text.matchAll(/^Environment=([A-Za-z_][A-Za-z0-9_]*)=(.*)$/gm)) {
    environment[m[1] as string] = m[2] as string;
  }
  return { argv, environment };
}

function xmlText(text: string): string {
  return text.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
}

/** ProgramArguments and EnvironmentVariables of a plist written by launchdPlist. */
export function launchdCommand(text: string): UnitCommand {
  const strings = (block: string | undefined) =>
    [...(block ?? "").matchAll(/<string>(.*?)<\/string>/g)].map((m) => xmlText(m[1] ?? ""));
  const argv = strings(/<key>ProgramArguments<\/key>\s*<array>([\s\S]*?)<\/array>/.exec(text)?.[1]);
  const pairs = [
    ...(/<key>EnvironmentVariables<\/key>\s*<dict>([\s\S]*?)<\/dict>/.exec(text)?.[1] ?? "").matchAll(
      /<key>(.*?)<\/key>\s*<string>(.*?)<\/string>/g,
    ),
  ];
  return {
    argv,
    environment: Object.fromEntries(pairs.map((m) => [xmlText(m[1] ?? ""), xmlText(m[2] ?? "")])),
  };
}
