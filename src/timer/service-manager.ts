/**
 * The service manager that runs the timer: systemd (the user's manager, or PID 1 with --system) or
 * launchd on macOS. Where its files go, and the systemctl or launchctl commands that start and
 * stop the timer.
 */
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { xdgDir } from "../config/paths.ts";
import type { Env } from "../os/env.ts";
import { LAUNCHD_LABEL } from "./units.ts";

export type Platform = "systemd" | "launchd";

export function platform(): Platform {
  return process.platform === "darwin" ? "launchd" : "systemd";
}

export function unitDir(p: Platform, system: boolean, env: Env, home: string): string {
  if (p === "launchd") return system ? "/Library/LaunchDaemons" : join(home, "Library", "LaunchAgents");
  if (system) return env.NIX_CACHE_LOGIN_SYSTEM_UNIT_DIR ?? "/etc/systemd/system";
  return join(xdgDir(env, "XDG_CONFIG_HOME"), "systemd", "user");
}

/** The systemctl or launchctl arguments that start, stop or reload the timer. */
export function controlCommands(
  p: Platform,
  spec: { system: boolean },
  action: "enable" | "disable",
  plist?: string,
) {
  if (p === "launchd") {
    const domain = spec.system ? "system" : `gui/${process.getuid?.() ?? 0}`;
    const label = spec.system ? LAUNCHD_LABEL.system : LAUNCHD_LABEL.user;
    return action === "enable"
      ? [
          ["launchctl", "bootout", `${domain}/${label}`],
          ["launchctl", "bootstrap", domain, plist ?? ""],
        ]
      : [["launchctl", "bootout", `${domain}/${label}`]];
  }
  const user = spec.system ? [] : ["--user"];
  const timer = spec.system ? "nix-cache-login-server.timer" : "nix-cache-login.timer";
  return action === "enable"
    ? [
        ["systemctl", ...user, "daemon-reload"],
        ["systemctl", ...user, "enable", "--now", timer],
      ]
    : [
        ["systemctl", ...user, "disable", "--now", timer],
        ["systemctl", ...user, "daemon-reload"],
      ];
}

/** Whether systemd (the user's manager, or PID 1 for --system) or launchd answers. */
export function managerReachable(p: Platform, system: boolean, env: Env): boolean {
  if (p === "launchd") return true;
  const r = spawnSync("systemctl", [...(system ? [] : ["--user"]), "show-environment"], {
    env: env as NodeJS.ProcessEnv,
    stdio: "ignore",
    timeout: 10_000,
  });
  return r.status === 0;
}

export function runControl(argv: string[], env: Env): { ok: boolean; output: string } {
  const [cmd, ...args] = argv as [string, ...string[]];
  const r = spawnSync(cmd, args, { env: env as NodeJS.ProcessEnv, encoding: "utf8", timeout: 60_000 });
  return { ok: r.status === 0, output: `${r.stderr ?? ""}${r.stdout ?? ""}`.trim() };
}
