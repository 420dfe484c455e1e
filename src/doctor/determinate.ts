/**
 * Determinate Nix: its daemon merges `authentication.additionalNetrcSources` of
 * /etc/determinate/config.json into its own netrc, and reads them only when it starts.
 */
import { readFile, stat } from "node:fs/promises";
import type { Env } from "../os/env.ts";
import { DETERMINATE_CONFIG, findOnPath, runProgram, samePath } from "./nix-facts.ts";
import { check, type Check } from "./report.ts";

export type DeterminateConfig =
  | { kind: "missing" }
  | { kind: "unreadable"; message: string }
  | { kind: "parsed"; sources: string[] | undefined };

export async function readDeterminateConfig(path = DETERMINATE_CONFIG): Promise<DeterminateConfig> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return { kind: "missing" };
    return { kind: "unreadable", message: `${path}: ${code ?? (e as Error).message}` };
  }
  try {
    const doc = JSON.parse(text) as { authentication?: { additionalNetrcSources?: unknown } };
    const list = doc.authentication?.additionalNetrcSources;
    return {
      kind: "parsed",
      sources: Array.isArray(list) ? list.filter((x): x is string => typeof x === "string") : undefined,
    };
  } catch (e) {
    return { kind: "unreadable", message: `${path}: not valid JSON (${(e as Error).message})` };
  }
}

const DETERMINATE_RESTART =
  "Determinate Nixd reads these files only when it starts: it has to be restarted after every token refresh, or Nix keeps sending the old token; a user's refresh timer and the NixOS server module's unit cannot do it (they do not run as root), so a root unit that watches the netrc does (docs/configure-nix.md#determinate-nix)";

/** Restarts Determinate Nixd: its systemd unit on Linux, its launchd job on macOS. */
function determinateRestart(platform: NodeJS.Platform): string {
  return platform === "darwin"
    ? "sudo launchctl kickstart -k system/systems.determinate.nix-daemon"
    : "sudo systemctl restart determinate-nixd";
}

/** `ps`'s elapsed time, `[[dd-]hh:]mm:ss`, in seconds; undefined when it is not that. */
export function parseElapsed(text: string): number | undefined {
  const m = /^\s*(?:(?:(\d+)-)?(\d+):)?(\d+):(\d+)\s*$/.exec(text);
  if (m === null) return undefined;
  const [, d, h, min, sec] = m;
  return ((Number(d ?? 0) * 24 + Number(h ?? 0)) * 60 + Number(min)) * 60 + Number(sec);
}

/** Longer than any daemon has run: ps shows such an elapsed time only for a process not yet started. */
const MAX_ELAPSED_SECONDS = 100 * 365 * 86400;

/**
 * When the oldest running process whose name starts with `name` started, from `ps -A -o
 * etime=,comm=` (Linux and macOS; Linux cuts a name to 15 characters, so `determinate-nixd` shows
 * as `determinate-nix`). Undefined when none runs or ps cannot tell.
 */
export async function processStartedAt(
  name: string,
  env: Env,
  signal: AbortSignal,
  now: Date,
): Promise<Date | undefined> {
  const ps = await findOnPath("ps", env);
  if (ps === undefined) return undefined;
  const r = await runProgram(ps, ["-A", "-o", "etime=,comm="], env, signal);
  if (r.code !== 0) return undefined;
  const prefix = name.slice(0, 15);
  let oldest: number | undefined;
  for (const line of r.stdout.split("\n")) {
    const m = /^\s*(\S+)\s+(.+?)\s*$/.exec(line);
    if (m === null) continue;
    const base = (m[2] as string).split("/").pop() ?? "";
    if (!base.startsWith(prefix)) continue;
    const seconds = parseElapsed(m[1] as string);
    // A process exec'd a moment ago can show an absurd elapsed time (seen: 441077234-00:18:40, its
    // start time not yet set): no daemon has run for a century, so that is no time at all.
    if (seconds === undefined || seconds > MAX_ELAPSED_SECONDS) continue;
    if (oldest === undefined || seconds > oldest) oldest = seconds;
  }
  return oldest === undefined ? undefined : new Date(now.getTime() - oldest * 1000);
}

export interface DeterminateDaemonFacts {
  /** When determinate-nixd started; undefined when it is not running (or ps cannot tell). */
  startedAt: Date | undefined;
  /** When the netrc was last written (its mtime); undefined when it does not exist. */
  netrcWrittenAt: Date | undefined;
  platform: NodeJS.Platform;
}

export async function gatherDeterminateDaemonFacts(
  netrcPath: string,
  env: Env,
  signal: AbortSignal,
  now: Date,
): Promise<DeterminateDaemonFacts> {
  const startedAt = await processStartedAt("determinate-nixd", env, signal, now);
  const netrcWrittenAt = await stat(netrcPath).then(
    (st) => st.mtime,
    () => undefined,
  );
  return { startedAt, netrcWrittenAt, platform: process.platform };
}

/**
 * Determinate Nixd reads additionalNetrcSources only when it starts (DeterminateSystems/determinate
 * issue 183): a daemon that started before the last write still sends the token before it. `ps`
 * gives whole seconds, so a start within the same second counts as before.
 */
export function determinateDaemonCheck(d: DeterminateDaemonFacts, netrcPath: string): Check {
  const title = "determinate daemon";
  if (d.startedAt === undefined) {
    return check(
      "nix_determinate_daemon",
      title,
      "note",
      "determinate-nixd does not seem to run (no such process)",
    );
  }
  if (d.netrcWrittenAt === undefined) {
    return check("nix_determinate_daemon", title, "skipped", `${netrcPath} does not exist yet`);
  }
  const started = d.startedAt.toISOString();
  const written = d.netrcWrittenAt.toISOString();
  if (d.startedAt.getTime() - 1000 < d.netrcWrittenAt.getTime()) {
    return check(
      "nix_determinate_daemon",
      title,
      "problem",
      `determinate-nixd started at ${started}, before ${netrcPath} was last written (${written}): it still sends the token it read at its start`,
      {
        details: [DETERMINATE_RESTART],
        fix: [
          `restart it: \`${determinateRestart(d.platform)}\``,
          "to have that done after each refresh: docs/configure-nix.md#determinate-nix",
        ],
      },
    );
  }
  return check(
    "nix_determinate_daemon",
    title,
    "ok",
    `determinate-nixd started at ${started}, after ${netrcPath} was last written (${written})`,
    { details: [DETERMINATE_RESTART] },
  );
}

export async function determinateCheck(config: DeterminateConfig, netrcPath: string): Promise<Check> {
  const title = "determinate";
  const snippet = `{"authentication": {"additionalNetrcSources": [${JSON.stringify(netrcPath)}]}}`;
  if (netrcPath.startsWith("/nix/store/")) {
    return check(
      "nix_determinate",
      title,
      "problem",
      `netrc_path ${netrcPath} is in /nix/store, which Determinate Nix refuses as a netrc source`,
      {
        fix: ["set netrc_path to a file outside /nix/store (e.g. /etc/nix/netrc or ~/.config/nix/netrc)"],
      },
    );
  }
  if (config.kind === "unreadable") {
    return check("nix_determinate", title, "problem", config.message, {
      fix: [`make ${DETERMINATE_CONFIG} valid JSON with ${snippet}`],
    });
  }
  const sources = config.kind === "parsed" ? (config.sources ?? []) : [];
  for (const s of sources) {
    if (await samePath(s, netrcPath)) {
      return check(
        "nix_determinate",
        title,
        "ok",
        `${DETERMINATE_CONFIG} lists ${netrcPath} in authentication.additionalNetrcSources`,
        { details: [DETERMINATE_RESTART] },
      );
    }
  }
  return check(
    "nix_determinate",
    title,
    "problem",
    `Determinate Nix does not read ${netrcPath}: it is not in authentication.additionalNetrcSources of ${DETERMINATE_CONFIG}`,
    {
      details: [DETERMINATE_RESTART],
      fix: [
        `add it there: ${snippet}`,
        "then restart Determinate Nixd (it reads the list and the files only when it starts)",
      ],
    },
  );
}
