/**
 * Multi-user installs: the daemon downloads, with the daemon's `netrc-file`; a user's own setting
 * counts only for trusted users.
 */
import { readFile } from "node:fs/promises";
import { userInfo } from "node:os";
import { join } from "node:path";
import type { Env } from "../os/env.ts";
import { nixConfLine, nixosLine } from "./nix.ts";
import {
  daemonRestart,
  findOnPath,
  runProgram,
  samePath,
  SYSTEM_NIX_CONF,
  type NixFacts,
} from "./nix-facts.ts";
import { check, type Check } from "./report.ts";

/** `netrc-file` as the daemon sees it: the last assignment in the system nix.conf, else its default. */
export function daemonNetrcFile(
  systemConf: string | undefined,
  confDir = "/etc/nix",
): { value: string; fromFile: boolean } {
  let value: string | undefined;
  for (const raw of (systemConf ?? "").split("\n")) {
    const line = raw.replace(/#.*/, "").trim();
    const m = /^netrc-file\s*=\s*(.*)$/.exec(line);
    if (m !== null) value = (m[1] as string).trim();
  }
  return value === undefined || value === ""
    ? { value: join(confDir, "netrc"), fromFile: false }
    : { value, fromFile: true };
}

/** Whether the user is in `trusted-users` (by name, `*`, or an `@group` they belong to). */
export function isTrusted(trustedUsers: string[], user: string, groups: string[]): boolean {
  return trustedUsers.some(
    (t) => t === "*" || t === user || (t.startsWith("@") && groups.includes(t.slice(1))),
  );
}

export async function userGroups(env: Env, signal: AbortSignal): Promise<string[]> {
  const id = await findOnPath("id", env);
  if (id === undefined) return [];
  const r = await runProgram(id, ["-Gn"], env, signal);
  return r.code === 0 ? r.stdout.trim().split(/\s+/) : [];
}

export interface DaemonFacts {
  systemConf: string | undefined;
  user: string;
  groups: string[];
}

export async function daemonCheck(facts: NixFacts, d: DaemonFacts, netrcPath: string): Promise<Check> {
  const title = "nix daemon";
  const daemon = daemonNetrcFile(d.systemConf);
  const where = daemon.fromFile ? `netrc-file in ${SYSTEM_NIX_CONF}` : "its default";
  const explain =
    "with a daemon, the daemon downloads and reads its own netrc-file; it honours a user's netrc-file only for trusted users";
  if (await samePath(daemon.value, netrcPath)) {
    return check("nix_daemon", title, "ok", `the daemon reads ${daemon.value} (${where})`, {
      details: [explain],
    });
  }
  const trusted = isTrusted(facts.trustedUsers, d.user, d.groups);
  if (trusted && facts.netrcFile !== undefined && (await samePath(facts.netrcFile, netrcPath))) {
    return check(
      "nix_daemon",
      title,
      "ok",
      `the daemon's own netrc-file is ${daemon.value}, but ${d.user} is a trusted user, so it uses ${netrcPath}`,
      { details: [explain] },
    );
  }
  return check(
    "nix_daemon",
    title,
    "problem",
    `the daemon reads ${daemon.value} (${where}), not ${netrcPath}${trusted ? "" : `, and ${d.user} is not in trusted-users`}`,
    {
      details: [explain],
      fix: [
        `add \`${nixConfLine(netrcPath)}\` to ${SYSTEM_NIX_CONF} and run \`${daemonRestart(facts)}\``,
        `on NixOS:  ${nixosLine(netrcPath)}`,
      ],
    },
  );
}

export async function gatherDaemonFacts(env: Env, signal: AbortSignal): Promise<DaemonFacts> {
  const systemConf = await readFile(SYSTEM_NIX_CONF, "utf8").catch(() => undefined);
  let user: string;
  try {
    user = userInfo().username;
  } catch {
    user = String(process.getuid?.() ?? "unknown");
  }
  return { systemConf, user, groups: await userGroups(env, signal) };
}
