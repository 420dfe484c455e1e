/**
 * `timer install|remove|status`: keeps the token fresh without Nix modules, by running this very
 * installation (Node.js and the script, by absolute path) as `refresh --min-valid` on a timer.
 *
 * - Linux: systemd user units nix-cache-login.service and .timer in $XDG_CONFIG_HOME/systemd/user;
 *   with --system (root) nix-cache-login-server.service and .timer in /etc/systemd/system, which
 *   run `service-account --min-valid` for a server.
 * - macOS: a launchd agent in ~/Library/LaunchAgents (--system: a daemon in /Library/LaunchDaemons).
 *
 * The files are made (and read back) by ../timer/units.ts, and started through
 * ../timer/service-manager.ts. Files are only ever replaced or removed when they carry our header,
 * so a unit someone wrote by hand under the same name is never touched.
 */
import { spawnSync } from "node:child_process";
import { oneLine, printable } from "../text.ts";
import { existsSync, lstatSync, readFileSync, readlinkSync, realpathSync } from "node:fs";
import { rmdir, unlink } from "node:fs/promises";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { SYSTEM_CONFIG } from "../config/find.ts";
import type { Env } from "../os/env.ts";
import { xdgDir } from "../config/paths.ts";
import { say, warn, withFields, type Context } from "../context.ts";
import { parseDuration } from "../duration.ts";
import { CliError, ExitCode } from "../errors.ts";
import { writeFileAtomic } from "../fs/atomic-file.ts";
import { foreignOwner, UntrustedPath, walkTrusted, writableByOthers } from "../fs/file-trust.ts";
import { fsReason } from "../fs/fs-errors.ts";
import { checkHomeIsOurs } from "../config/home.ts";
import { loadSetup } from "../core/setup.ts";
import {
  controlCommands,
  managerReachable,
  platform,
  runControl,
  unitDir,
  type Platform,
} from "../timer/service-manager.ts";
import {
  LAUNCHD_LABEL,
  launchdCommand,
  programFiles,
  launchdPlist,
  MARKER,
  onCalendar,
  systemdCommand,
  systemdUnits,
  type TimerFile,
  type TimerSpec,
  type UnitCommand,
} from "../timer/units.ts";

export interface TimerOptions {
  action: "install" | "remove" | "status";
  interval?: string | undefined;
  minValid?: string | undefined;
  system?: boolean | undefined;
}

export const DEFAULT_INTERVAL = "2m";
export const DEFAULT_MIN_VALID = "4m";

const shellWord = (w: string) => (/^[A-Za-z0-9_./:=@%+-]+$/.test(w) ? w : `'${w.replace(/'/g, "'\\''")}'`);

function ours(path: string): boolean | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
  return text.includes(MARKER);
}

function foreign(path: string): CliError {
  return new CliError(
    "timer_unit_foreign",
    `${path} exists and was not written by nix-cache-login timer install`,
    {
      exitCode: ExitCode.failure,
      hint: "move it away (or remove it) yourself, then run the command again",
    },
  );
}

/** The CLI's own script, by absolute path without symlinks (npm's bin link, a profile's link). */
function thisScript(): string {
  const arg = process.argv[1];
  if (arg === undefined || arg === "") {
    throw new CliError(
      "script_path_unknown",
      "cannot tell where nix-cache-login is installed (no script path)",
      {
        exitCode: ExitCode.failure,
      },
    );
  }
  return realpathSync(resolve(arg));
}

/**
 * A package that starts the CLI through a wrapper names it in $NIX_CACHE_LOGIN_LAUNCHER (the Nix
 * package's bin/nix-cache-login, which puts secret-tool on PATH), and the unit runs the wrapper
 * instead of Node.js and the script, so it gets what the wrapper sets. A wrapper in /nix/store is
 * gone after an upgrade and a garbage collection; a command on PATH outside the store that is the
 * same file (a profile's bin/nix-cache-login) follows upgrades, so the unit names that when there
 * is one. Either must be a file no other user could change: it runs with the unit's rights.
 */
function launcher(ctx: Context): string[] | undefined {
  const named = ctx.launcher;
  if (named === undefined || named === "") return undefined;
  const shown = `$NIX_CACHE_LOGIN_LAUNCHER: ${oneLine(named)}`;
  const hint =
    "set it to the absolute path of the command that starts nix-cache-login (the package's wrapper), or unset it";
  if (!isAbsolute(named)) {
    throw new CliError("timer_launcher_not_absolute", `${shown}: not an absolute path`, {
      exitCode: ExitCode.usage,
      hint,
    });
  }
  const checked = trustedProgram(named);
  if ("why" in checked) {
    throw new CliError("timer_launcher_untrusted", `${shown}: ${checked.why}`, {
      exitCode: ExitCode.usage,
      hint,
    });
  }
  const stable = (ctx.env.PATH ?? "")
    .split(":")
    .filter((d) => isAbsolute(d) && !resolve(d).startsWith("/nix/store/"))
    .map((d) => join(resolve(d), "nix-cache-login"))
    .find((p) => {
      const other = trustedProgram(p);
      return "real" in other && other.real === checked.real;
    });
  return [stable ?? resolve(named)];
}

/**
 * A program that may go into a unit, with every link resolved; or why not (missing, not
 * executable, others could change it).
 */
function trustedProgram(path: string): { real: string } | { why: string } {
  try {
    const { real, st } = walkTrusted(path);
    if (st === undefined) return { why: "does not exist" };
    if (!st.isFile() || (st.mode & 0o111) === 0) return { why: "is not an executable file" };
    const why = foreignOwner(st) ?? writableByOthers(st);
    return why === undefined ? { real } : { why: `is ${why}` };
  } catch (e) {
    if (e instanceof UntrustedPath)
      return { why: e.at === path ? `is ${e.why}` : `its path goes through ${e.at}, ${e.why}` };
    return { why: fsReason(e) };
  }
}

function buildSpec(ctx: Context, opts: TimerOptions, home: string): TimerSpec {
  const system = opts.system === true;
  const interval = (opts.interval ?? DEFAULT_INTERVAL).trim();
  const minValid = (opts.minValid ?? DEFAULT_MIN_VALID).trim();
  const intervalSeconds = parseDuration(interval, "--interval");
  const minValidSeconds = parseDuration(minValid, "--min-valid");
  if (onCalendar(intervalSeconds) === undefined) {
    throw new CliError(
      "interval_not_even",
      `--interval: ${interval} does not divide a minute, an hour or a day evenly`,
      {
        exitCode: ExitCode.usage,
        hint: "use e.g. 1m, 2m, 5m, 10m, 15m, 30m or 1h",
      },
    );
  }
  const randomizedDelay = system ? "15s" : "30s";
  if (intervalSeconds + parseDuration(randomizedDelay, "delay") + 1 >= minValidSeconds) {
    throw new CliError(
      "min_valid_too_short",
      `--min-valid ${minValid} is not longer than --interval ${interval} plus the random delay (${randomizedDelay}): the token could expire between two runs`,
      { exitCode: ExitCode.usage, hint: "raise --min-valid or shorten --interval" },
    );
  }
  // The configuration must load now, not fail every few minutes in the background, and it must be
  // the one the unit reads: a system unit does not see the caller's ~/.config (issue 24).
  const named = ctx.configFlag !== undefined || (ctx.env.NIX_CACHE_LOGIN_CONFIG ?? "") !== "";
  const s = system && !named ? loadSystemSetup(ctx) : loadSetup(ctx);
  if (system && s.config.mode !== "service-account") {
    throw new CliError(
      "system_needs_service_account",
      `${s.config.path}: --system needs a service-account configuration (client_secret_file)`,
      {
        exitCode: ExitCode.usage,
        hint: "set client_secret_file, or install the timer as the user who signs in, without --system",
      },
    );
  }
  // The unit does not see this shell's environment: a file named by --config or
  // $NIX_CACHE_LOGIN_CONFIG is passed on by path.
  const configPath =
    s.config.source === "--config" || s.config.source === "$NIX_CACHE_LOGIN_CONFIG"
      ? s.config.path
      : undefined;
  if (system) loadAsSystemUnit(ctx, s.config.path);
  return {
    system,
    program: launcher(ctx) ?? [process.execPath, thisScript()],
    configPath,
    interval,
    intervalSeconds,
    minValid,
    randomizedDelay,
    home,
  };
}

/** The configuration a system unit reads when none is named: /etc/nix-cache-login/config.toml. */
function loadSystemSetup(ctx: Context): ReturnType<typeof loadSetup> {
  if (!existsSync(SYSTEM_CONFIG)) {
    throw new CliError(
      "system_config_missing",
      `--system: the system unit reads ${SYSTEM_CONFIG} (no --config was given), and it does not exist`,
      {
        exitCode: ExitCode.usage,
        hint: `write the service account's configuration there, or name it with \`timer install --system --config PATH\` (the unit then reads that file)`,
      },
    );
  }
  const s = loadSetup(withFields(ctx, { configFlag: SYSTEM_CONFIG }));
  return { ...s, config: { ...s.config, source: "system" } };
}

/** The environment a system unit written here runs in (systemd sets no HOME without User=). */
export function systemUnitEnv(env: Env, configPath: string): Env {
  return {
    PATH: env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin",
    XDG_STATE_HOME: process.platform === "darwin" ? "/var/db" : "/var/lib",
    NIX_CACHE_LOGIN_CONFIG: configPath,
  };
}

/**
 * Loads the configuration as the system unit will, without root's shell variables: a netrc_path
 * left to its default ($XDG_CONFIG_HOME/nix/netrc) or a path naming $HOME would fail every run.
 */
function loadAsSystemUnit(ctx: Context, configPath: string): void {
  try {
    loadSetup(withFields(ctx, { configFlag: undefined, env: systemUnitEnv(ctx.env, configPath) }));
  } catch (e) {
    if (!(e instanceof CliError) || e.code !== "home_not_set") throw e;
    throw new CliError(
      "system_config_needs_home",
      `--system: ${configPath} needs $HOME, which a system unit does not have (netrc_path is not set, or a path names $HOME or ~)`,
      {
        exitCode: ExitCode.usage,
        hint: "set netrc_path to an absolute path, e.g. /etc/nix/netrc (the netrc-file nix-daemon reads by default)",
      },
    );
  }
}

async function writeUnit(file: TimerFile): Promise<"written" | "unchanged"> {
  let old: string | undefined;
  try {
    old = readFileSync(file.path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
  if (old !== undefined && !old.includes(MARKER)) throw foreign(file.path);
  if (old === file.text) return "unchanged";
  // The project's atomic write: a temp file of an unpredictable name created exclusively (never
  // through something planted there), fsync, rename. Units hold no secret and are world-readable.
  await writeFileAtomic(file.path, file.text, "utf8", "the unit directory", { mode: 0o644 });
  return "written";
}

export async function timer(ctx: Context, opts: TimerOptions): Promise<number> {
  const system = opts.system === true;
  if (system && process.getuid?.() !== 0) {
    throw new CliError("system_needs_root", "--system installs system units: run it as root", {
      exitCode: ExitCode.usage,
      hint: "without --system, the timer runs as you (user units)",
    });
  }
  if (opts.action !== "install" && (opts.interval !== undefined || opts.minValid !== undefined)) {
    throw new CliError(
      "timer_options_not_install",
      `timer ${opts.action} takes no --interval or --min-valid`,
      {
        exitCode: ExitCode.usage,
        hint: "they belong to `nix-cache-login timer install`",
      },
    );
  }
  const home = ctx.env.HOME ?? "";
  const p = platform();
  const dir = unitDir(p, system, ctx.env, home);
  checkHomeIsOurs(ctx.env, [dir]);
  if (opts.action === "install") return await install(ctx, buildSpec(ctx, opts, home), p, dir);
  if (opts.action === "remove") return await remove(ctx, system, p, dir);
  return status(ctx, system, p, dir);
}

async function install(ctx: Context, spec: TimerSpec, p: Platform, dir: string): Promise<number> {
  const files = p === "launchd" ? launchdPlist(spec, dir) : systemdUnits(spec, dir);
  for (const f of files) if (ours(f.path) === false) throw foreign(f.path);
  const npx = spec.program.find((p) => p.includes("/_npx/"));
  if (npx !== undefined) {
    warn(
      ctx,
      `the timer runs ${npx}, in npx's cache, which npm may clean: install nix-cache-login (npm install -g nix-cache-login) and run \`timer install\` again`,
    );
  }
  // The CLI itself (a launcher, or the script) from the store, or only the Node.js that runs it.
  const [first, script] = spec.program;
  const cli = spec.program.length === 1 ? first : script;
  if (cli?.startsWith("/nix/store/") === true) {
    warn(
      ctx,
      `the timer runs ${cli}, which an upgrade and a garbage collection remove: install nix-cache-login into a profile on PATH (nix profile install) and run \`timer install\` again, or run it again after each upgrade`,
    );
  } else if (first?.startsWith("/nix/store/") === true) {
    warn(
      ctx,
      `the timer runs Node.js from ${first}, which an upgrade and a garbage collection remove: run \`timer install\` again after each upgrade of that Node.js`,
    );
  }
  const results = [];
  for (const f of files) results.push(await writeUnit(f));
  const changed = results.includes("written");
  say(
    ctx,
    `${changed ? "Wrote" : "Already up to date:"} ${files.map((f) => f.path).join(" and ")}: every ${spec.interval}, \`${spec.system ? "service-account" : "refresh"} --min-valid ${spec.minValid}\` with ${spec.program.join(" ")}.`,
  );
  const commands = controlCommands(p, spec, "enable", files[0]?.path);
  if (managerReachable(p, spec.system, ctx.env)) {
    for (const [i, argv] of commands.entries()) {
      const r = runControl(argv, ctx.env);
      // launchctl bootout of a job that is not loaded fails: that is expected on a first install.
      if (!r.ok && !(p === "launchd" && i === 0)) {
        throw new CliError(
          "timer_command_failed",
          `${argv.join(" ")} failed: ${r.output.split("\n")[0] ?? ""}`,
          {
            exitCode: ExitCode.failure,
            hint: `the unit files are in ${dir}; run the command yourself to see why`,
          },
        );
      }
    }
    say(ctx, `Enabled and started ${spec.system ? "nix-cache-login-server" : "nix-cache-login"}'s timer.`);
  } else {
    const how = commands.map((c) => c.map(shellWord).join(" ")).join(" && ");
    ctx.stderr.write(
      `No ${spec.system ? "systemd" : "systemd user manager"} is reachable from here; to start the timer, run in your session:\n  ${how}\n`,
    );
  }
  return ExitCode.ok;
}

function timerFiles(p: Platform, system: boolean, dir: string): string[] {
  if (p === "launchd") return [join(dir, `${system ? LAUNCHD_LABEL.system : LAUNCHD_LABEL.user}.plist`)];
  const base = system ? "nix-cache-login-server" : "nix-cache-login";
  return [join(dir, `${base}.service`), join(dir, `${base}.timer`)];
}

async function remove(ctx: Context, system: boolean, p: Platform, dir: string): Promise<number> {
  const files = timerFiles(p, system, dir);
  const present = files.filter((f) => ours(f) !== undefined);
  for (const f of present) if (ours(f) === false) throw foreign(f);
  const reachable = present.length > 0 && managerReachable(p, system, ctx.env);
  if (reachable) {
    for (const argv of controlCommands(p, { system }, "disable")) runControl(argv, ctx.env);
  }
  for (const f of present) await unlink(f);
  // `systemctl enable` links the timer from timers.target.wants; without a manager, that link is
  // ours to remove. Directories left empty go too (never $XDG_CONFIG_HOME itself).
  if (p === "systemd") {
    const wants = join(dir, "timers.target.wants");
    const link = join(wants, system ? "nix-cache-login-server.timer" : "nix-cache-login.timer");
    try {
      if (lstatSync(link).isSymbolicLink() && readlinkSync(link).endsWith(".timer")) await unlink(link);
    } catch {
      // No link.
    }
    if (!system) {
      const stop = xdgDir(ctx.env, "XDG_CONFIG_HOME");
      for (const d of [wants, dir, dirname(dir)]) {
        if (!d.startsWith(`${stop}/`)) break;
        try {
          await rmdir(d);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== "ENOENT") break;
        }
      }
    }
  }
  if (reachable) runControl(["systemctl", ...(system ? [] : ["--user"]), "daemon-reload"], ctx.env);
  say(
    ctx,
    present.length === 0 ? "No timer is installed; nothing to remove." : `Removed ${present.join(" and ")}.`,
  );
  return ExitCode.ok;
}

/**
 * Runs the unit's command with --dry-run, in the environment the unit gets: the variables it sets,
 * over the service manager's (a user manager's, when it answers; this shell's otherwise, without
 * $NIX_CACHE_LOGIN_CONFIG, which a unit never sees). A system unit gets no user's variables.
 */
function dryRun(unit: UnitCommand, p: Platform, system: boolean, env: Env): { ok: boolean; line: string } {
  const [cmd, ...args] = unit.argv;
  if (cmd === undefined) return { ok: false, line: "the unit names no command" };
  let base: Record<string, string | undefined>;
  if (system) base = { PATH: systemUnitEnv(env, "").PATH };
  else {
    base = { ...env, NIX_CACHE_LOGIN_CONFIG: undefined };
    if (p === "systemd" && managerReachable(p, false, env)) {
      const shown = runControl(["systemctl", "--user", "show-environment"], env);
      if (shown.ok)
        base = Object.fromEntries(
          shown.output.split("\n").map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
        );
    }
  }
  const r = spawnSync(cmd, [...args, "--dry-run"], {
    env: { ...base, ...unit.environment } as NodeJS.ProcessEnv,
    encoding: "utf8",
    stdio: ["ignore", "ignore", "pipe"],
    timeout: 30_000,
  });
  const said = (r.stderr ?? "")
    .split("\n")
    .map((l) => l.replace(/^error: /, ""))
    .filter((l) => l !== "" && !l.startsWith("hint: "));
  const first = printable(said[0] ?? (r.error === undefined ? "" : String(r.error)), 400);
  if (r.status === 0) return { ok: true, line: `ok, ${first.replace(/^Dry run: t/, "t")}` };
  return {
    ok: false,
    line: `the unit's command fails (exit ${r.status ?? r.signal ?? "?"}): ${first}`,
  };
}

function status(ctx: Context, system: boolean, p: Platform, dir: string): number {
  const files = timerFiles(p, system, dir);
  const lines: string[] = [];
  let ok = true;
  let hint = `run \`nix-cache-login timer install${system ? " --system" : ""}\``;
  for (const f of files) {
    const mine = ours(f);
    if (mine === undefined) ok = false;
    if (mine === false) {
      ok = false;
      warn(ctx, `${f} was not written by nix-cache-login timer install`);
    }
    lines.push(`${f}: ${mine === undefined ? "not installed" : mine ? "installed" : "someone else's file"}`);
  }
  const main = files[0];
  if (main !== undefined && ours(main) === true) {
    const text = readFileSync(main, "utf8");
    const unit = p === "launchd" ? launchdCommand(text) : systemdCommand(text);
    lines.push(`runs: ${unit.argv.join(" ")}`);
    const missing = programFiles(unit.argv).filter((path) => !existsSync(path));
    if (missing.length > 0) {
      ok = false;
      lines.push(`stale: ${missing.join(" and ")} no longer exist${missing.length === 1 ? "s" : ""}`);
    } else {
      const check = dryRun(unit, p, system, ctx.env);
      lines.push(`dry run: ${check.line}`);
      if (!check.ok) {
        ok = false;
        hint =
          "fix what the dry run names (the unit would fail the same way), then run `nix-cache-login timer status` again";
      }
    }
  }
  if (ok && p === "systemd" && managerReachable(p, system, ctx.env)) {
    const unit = system ? "nix-cache-login-server" : "nix-cache-login";
    const user = system ? [] : ["--user"];
    const enabled = runControl(["systemctl", ...user, "is-enabled", `${unit}.timer`], ctx.env).output;
    const active = runControl(["systemctl", ...user, "is-active", `${unit}.timer`], ctx.env).output;
    const last = runControl(
      ["systemctl", ...user, "show", `${unit}.service`, "-p", "Result", "-p", "ExecMainStatus", "--value"],
      ctx.env,
    );
    lines.push(`timer: ${enabled}, ${active}`);
    lines.push(`last run: ${last.output === "" ? "none" : last.output.replace(/\n/g, ", ")}`);
    if (enabled !== "enabled" || active !== "active") ok = false;
  } else if (ok && p === "systemd") {
    lines.push(
      `manager: no ${system ? "systemd" : "systemd user manager"} reachable; cannot tell whether the timer runs`,
    );
  }
  // Paths and the unit's own words: one line each, without control characters.
  ctx.stdout.write(lines.map((l) => `${oneLine(l)}\n`).join(""));
  if (!ok) ctx.stderr.write(`hint: ${oneLine(hint)}\n`);
  return ok ? ExitCode.ok : ExitCode.failure;
}
