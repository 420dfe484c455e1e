/**
 * The facts the Nix checks judge, gathered from this machine: the `nix` on PATH, its version and
 * settings (run with the user's environment, so NIX_CONF_DIR, NIX_CONFIG and NIX_REMOTE count),
 * whether a daemon downloads, and which files are the same file.
 */
import { spawn } from "node:child_process";
import { constants } from "node:fs";
import { access, realpath } from "node:fs/promises";
import { delimiter, join, resolve } from "node:path";
import type { Env } from "../os/env.ts";

export const SYSTEM_NIX_CONF = "/etc/nix/nix.conf";
export const DETERMINATE_CONFIG = "/etc/determinate/config.json";
export const DEFAULT_DAEMON_SOCKET = "/nix/var/nix/daemon-socket/socket";
const NIX_TIMEOUT_MS = 20_000;

export interface ProgramResult {
  code: number | null;
  stdout: string;
  stderr: string;
  error?: string;
}

export function runProgram(
  file: string,
  args: string[],
  env: Env,
  signal: AbortSignal,
): Promise<ProgramResult> {
  return new Promise((resolvePromise) => {
    const child = spawn(file, args, {
      env: { ...env } as NodeJS.ProcessEnv,
      stdio: ["ignore", "pipe", "pipe"],
      signal,
      timeout: NIX_TIMEOUT_MS,
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    let error: string | undefined;
    child.on("error", (e) => (error = e.message));
    child.on("close", (code, sig) =>
      resolvePromise({
        code,
        stdout,
        stderr,
        ...(error !== undefined ? { error } : sig !== null ? { error: `killed by ${sig}` } : {}),
      }),
    );
  });
}

export async function findOnPath(name: string, env: Env): Promise<string | undefined> {
  for (const dir of (env.PATH ?? "").split(delimiter)) {
    if (dir === "") continue;
    const candidate = join(dir, name);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // keep looking
    }
  }
  return undefined;
}

export interface NixFacts {
  path: string;
  /** First line of `nix --version`, e.g. "nix (Nix) 2.8.0". */
  version: string;
  determinate: boolean;
  /** The command that printed the settings: `nix config show` (Nix >= 2.19) or `nix show-config`. */
  settingsCommand: string | undefined;
  settingsError: string | undefined;
  netrcFile: string | undefined;
  store: string | undefined;
  trustedUsers: string[];
  /** A daemon does the downloads (store = daemon/unix://..., or its socket exists). */
  multiUser: boolean;
  /** process.platform: the daemon is a systemd service on Linux, a launchd daemon on macOS. */
  platform: NodeJS.Platform;
}

/**
 * The command that restarts the Nix daemon: its systemd unit on Linux, its launchd job on macOS
 * (`org.nixos.nix-daemon`, the label of Nix's and Lix's installers; Determinate Nix has its own,
 * see ./determinate.ts).
 */
export function daemonRestart(facts: Pick<NixFacts, "platform">): string {
  return facts.platform === "darwin"
    ? "sudo launchctl kickstart -k system/org.nixos.nix-daemon"
    : "sudo systemctl restart nix-daemon";
}

function settingValue(settings: Record<string, { value?: unknown }>, name: string): unknown {
  return settings[name]?.value;
}

function firstLine(text: string): string {
  return (
    text
      .split("\n")
      .map((l) => l.trim())
      .find((l) => l !== "") ?? ""
  );
}

/** Runs the installed `nix` with the user's environment (so NIX_CONF_DIR, NIX_CONFIG, NIX_REMOTE count). */
export async function gatherNixFacts(nixPath: string, env: Env, signal: AbortSignal): Promise<NixFacts> {
  const version = await runProgram(nixPath, ["--version"], env, signal);
  const versionLine = firstLine(version.stdout) || firstLine(version.stderr) || "unknown version";
  const determinate = /determinate/i.test(versionLine) || (await exists(DETERMINATE_CONFIG));

  // `nix config show` since Nix 2.19; before that `nix show-config` (2.8 has only this one).
  // Both need the nix-command feature, which older installs do not enable by default.
  const flags = ["--extra-experimental-features", "nix-command"];
  let settingsCommand: string | undefined;
  let settingsError: string | undefined;
  let settings: Record<string, { value?: unknown }> | undefined;
  for (const sub of [["config", "show"], ["show-config"]]) {
    const r = await runProgram(nixPath, [...flags, ...sub, "--json"], env, signal);
    if (r.code === 0) {
      try {
        settings = JSON.parse(r.stdout) as Record<string, { value?: unknown }>;
        settingsCommand = `nix ${sub.join(" ")}`;
        settingsError = undefined;
        break;
      } catch {
        settingsError = `\`nix ${sub.join(" ")} --json\` printed something that is not JSON`;
        continue;
      }
    }
    settingsError = `\`nix ${sub.join(" ")}\` failed: ${r.error ?? (firstLine(r.stderr) || `exit ${r.code}`)}`;
  }
  const netrcFile = settings === undefined ? undefined : settingValue(settings, "netrc-file");
  const store = settings === undefined ? undefined : settingValue(settings, "store");
  const trusted = settings === undefined ? undefined : settingValue(settings, "trusted-users");
  const storeText = typeof store === "string" ? store : undefined;
  const socket = env.NIX_DAEMON_SOCKET_PATH ?? DEFAULT_DAEMON_SOCKET;
  const multiUser =
    storeText === "daemon" || (storeText?.startsWith("unix://") ?? false) || (await exists(socket));
  return {
    path: nixPath,
    version: versionLine,
    determinate,
    settingsCommand,
    settingsError,
    netrcFile: typeof netrcFile === "string" ? netrcFile : undefined,
    store: storeText,
    trustedUsers: Array.isArray(trusted) ? trusted.filter((t): t is string => typeof t === "string") : [],
    multiUser,
    platform: process.platform,
  };
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** Same file? Compares resolved paths, and real paths when both exist (symlinked dotfiles). */
export async function samePath(a: string, b: string): Promise<boolean> {
  if (resolve(a) === resolve(b)) return true;
  try {
    return (await realpath(a)) === (await realpath(b));
  } catch {
    return false;
  }
}
