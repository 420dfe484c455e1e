/**
 * Doctor checks on Nix: is it installed, which netrc file does it read, and the two setups where
 * the answer is not simply `netrc-file` in the user's nix.conf: Determinate Nix (its daemon merges
 * `authentication.additionalNetrcSources` into its own netrc, reading them only when it starts) and
 * multi-user installs (the daemon downloads, with the daemon's `netrc-file`; a user's own setting
 * counts only for trusted users). Facts: ../../TESTBED.md, "netrc as curl and Nix read it".
 *
 * Gathering facts (running `nix`, reading files) is kept apart from judging them, so the verdicts
 * can be tested for setups this machine does not have.
 */
import { spawn } from "node:child_process";
import { constants } from "node:fs";
import { access, readFile, realpath, stat } from "node:fs/promises";
import { userInfo } from "node:os";
import { delimiter, join, resolve } from "node:path";
import type { Env } from "../os/env.ts";
import { xdgDir } from "../config/paths.ts";
import { check, type Check } from "./report.ts";

export const DETERMINATE_CONFIG = "/etc/determinate/config.json";
export const SYSTEM_NIX_CONF = "/etc/nix/nix.conf";
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

/** The nix.conf a fix should go to: the daemon's for multi-user installs, else the user's. */
export function nixConfTarget(facts: Pick<NixFacts, "multiUser">, env: Env): string {
  if (facts.multiUser) return SYSTEM_NIX_CONF;
  const dir = env.NIX_CONF_DIR;
  if (dir !== undefined && dir !== "") return join(dir, "nix.conf");
  try {
    return join(xdgDir(env, "XDG_CONFIG_HOME"), "nix", "nix.conf");
  } catch {
    return "~/.config/nix/nix.conf";
  }
}

export function nixConfLine(netrcPath: string): string {
  return `netrc-file = ${netrcPath}`;
}

export function nixosLine(netrcPath: string): string {
  return `nix.settings.netrc-file = "${netrcPath}";`;
}

export function nixSummaryCheck(facts: NixFacts): Check {
  const kind = facts.determinate ? "Determinate Nix" : "upstream Nix";
  const install = facts.multiUser
    ? "multi-user (a daemon downloads)"
    : `single-user${facts.store !== undefined ? ` (store ${facts.store})` : ""}`;
  return check("nix", "nix", "ok", `${facts.path}: ${facts.version}; ${kind}, ${install}`, {
    details: facts.settingsCommand !== undefined ? [`settings read with \`${facts.settingsCommand}\``] : [],
  });
}

/** Does the Nix the user runs read netrc_path? */
export async function nixNetrcFileCheck(facts: NixFacts, netrcPath: string, env: Env): Promise<Check> {
  const title = "nix netrc-file";
  if (facts.netrcFile === undefined) {
    return check(
      "nix_netrc_file",
      title,
      "problem",
      `could not read Nix's settings: ${facts.settingsError ?? "no netrc-file"}`,
      {
        fix: [`make sure \`nix show-config\` (or \`nix config show\`) works, then run doctor again`],
      },
    );
  }
  if (await samePath(facts.netrcFile, netrcPath)) {
    return check(
      "nix_netrc_file",
      title,
      "ok",
      `Nix reads ${facts.netrcFile}, the netrc_path of the configuration`,
    );
  }
  if (facts.determinate) {
    // Determinate Nixd owns netrc-file and merges additionalNetrcSources into it: see that check.
    return check(
      "nix_netrc_file",
      title,
      "note",
      `Nix reads ${facts.netrcFile}; Determinate Nix fills it from authentication.additionalNetrcSources (see determinate)`,
    );
  }
  const target = nixConfTarget(facts, env);
  const fromEnv = /(^|\n)\s*netrc-file\s*=/.test(env.NIX_CONFIG ?? "");
  return check("nix_netrc_file", title, "problem", `Nix reads ${facts.netrcFile}, not ${netrcPath}`, {
    details: [
      ...(fromEnv ? ["$NIX_CONFIG sets netrc-file, and it overrides every nix.conf"] : []),
      ...(facts.multiUser ? ["then restart the daemon: `sudo systemctl restart nix-daemon`"] : []),
    ],
    fix: [`add this line to ${target}:  ${nixConfLine(netrcPath)}`, `on NixOS:  ${nixosLine(netrcPath)}`],
  });
}

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
  "Determinate Nixd reads these files only when it starts: restart it after every token refresh (e.g. from the refresh timer), or Nix keeps sending the old token";

/** `ps`'s elapsed time, `[[dd-]hh:]mm:ss`, in seconds; undefined when it is not that. */
export function parseElapsed(text: string): number | undefined {
  const m = /^\s*(?:(?:(\d+)-)?(\d+):)?(\d+):(\d+)\s*$/.exec(text);
  if (m === null) return undefined;
  const [, d, h, min, sec] = m;
  return ((Number(d ?? 0) * 24 + Number(h ?? 0)) * 60 + Number(min)) * 60 + Number(sec);
}

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
    if (seconds !== undefined && (oldest === undefined || seconds > oldest)) oldest = seconds;
  }
  return oldest === undefined ? undefined : new Date(now.getTime() - oldest * 1000);
}

export interface DeterminateDaemonFacts {
  /** When determinate-nixd started; undefined when it is not running (or ps cannot tell). */
  startedAt: Date | undefined;
  /** When the netrc was last written (its mtime); undefined when it does not exist. */
  netrcWrittenAt: Date | undefined;
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
  return { startedAt, netrcWrittenAt };
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
          "restart it: `sudo systemctl restart determinate-nixd` (macOS: `sudo launchctl kickstart -k system/systems.determinate.nix-daemon`)",
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
        `add \`${nixConfLine(netrcPath)}\` to ${SYSTEM_NIX_CONF} and run \`sudo systemctl restart nix-daemon\``,
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

export interface LibcurlFacts {
  /** The library file Nix loads, when it could be found. */
  path: string | undefined;
  version: string | undefined;
  /** How the version was found: from the Nix store path's name, or the library's own text. */
  from: "store path" | "library" | undefined;
  error: string | undefined;
}

/** Reads at most this much of a library file when looking for its version string. */
const LIBRARY_READ_LIMIT = 16 * 1024 * 1024;

/**
 * The libcurl that the `nix` binary loads: the dynamic loader's answer (`ldd` on Linux,
 * `otool -L` on macOS), then the version from the store path (`/nix/store/HASH-curl-8.11.0/...`)
 * or, for a system library, the `libcurl/X.Y.Z` string that curl builds into itself.
 */
export async function gatherLibcurlFacts(
  nixPath: string,
  env: Env,
  signal: AbortSignal,
): Promise<LibcurlFacts> {
  let binary: string;
  try {
    binary = await realpath(nixPath);
  } catch {
    binary = nixPath;
  }
  const darwin = process.platform === "darwin";
  const tool = await findOnPath(darwin ? "otool" : "ldd", env);
  if (tool === undefined) {
    return {
      path: undefined,
      version: undefined,
      from: undefined,
      error: `${darwin ? "otool" : "ldd"} is not on PATH`,
    };
  }
  const r = await runProgram(tool, darwin ? ["-L", binary] : [binary], env, signal);
  const line = r.stdout.split("\n").find((l) => /libcurl/.test(l));
  if (r.code !== 0 || line === undefined) {
    return {
      path: undefined,
      version: undefined,
      from: undefined,
      error:
        r.code !== 0
          ? `\`${tool} ${binary}\` failed`
          : `${binary} does not load a shared libcurl (a static build?)`,
    };
  }
  const path = (darwin ? /^\s*(\S+)/.exec(line)?.[1] : /=>\s*(\S+)/.exec(line)?.[1]) ?? undefined;
  return libcurlVersionOf(path);
}

export async function libcurlVersionOf(path: string | undefined): Promise<LibcurlFacts> {
  if (path === undefined) return { path, version: undefined, from: undefined, error: "no library path" };
  const store = /\/nix\/store\/[0-9a-z]{32}-curl-(\d+\.\d+(?:\.\d+)?)(?:-[a-z]+)?\//.exec(path);
  if (store !== null) return { path, version: store[1], from: "store path", error: undefined };
  try {
    const real = await realpath(path);
    const st = await stat(real);
    if (!st.isFile() || st.size > LIBRARY_READ_LIMIT) throw new Error("not a library file");
    const m = /libcurl\/(\d+\.\d+\.\d+)/.exec((await readFile(real)).toString("latin1"));
    if (m !== null) return { path, version: m[1], from: "library", error: undefined };
    return { path, version: undefined, from: undefined, error: `no version string in ${path}` };
  } catch (e) {
    return { path, version: undefined, from: undefined, error: `${path}: ${(e as Error).message}` };
  }
}

function versionParts(v: string): number[] {
  return v.split(".").map((x) => Number(x));
}

/** -1, 0 or 1 as a is older than, the same as or newer than b. */
export function compareVersions(a: string, b: string): number {
  const pa = versionParts(a);
  const pb = versionParts(b);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  return 0;
}

/**
 * What the libcurl version means for a token in a netrc (curl lib/netrc.c): up to 8.10 a line may
 * be 4095 bytes (a longer one is not read); 8.11.0 capped every token at 127 bytes, so no
 * JWT gets through (fixed in 8.11.1); since 8.11.1 a token may be 4095 bytes.
 */
export function libcurlCheck(facts: LibcurlFacts): Check {
  const title = "nix libcurl";
  if (facts.version === undefined) {
    return check(
      "nix_libcurl",
      title,
      "note",
      `could not tell which libcurl Nix uses: ${facts.error ?? "unknown"}`,
    );
  }
  const v = facts.version;
  const where = `${facts.path ?? "libcurl"} (version from the ${facts.from ?? "library"})`;
  if (v === "8.11.0") {
    return check(
      "nix_libcurl",
      title,
      "problem",
      `Nix uses libcurl 8.11.0, which ignores netrc tokens longer than 127 bytes: every access token (a JWT) is dropped and Nix sends no credentials`,
      {
        details: [where],
        fix: ["update Nix to one built with curl 8.11.1 or newer (or older than 8.11.0)"],
      },
    );
  }
  const limit =
    compareVersions(v, "8.11.0") < 0
      ? "netrc lines up to 4095 bytes (a longer line is not read)"
      : "netrc tokens up to 4095 bytes, lines up to 16383";
  return check("nix_libcurl", title, "ok", `Nix uses libcurl ${v}: ${limit}`, { details: [where] });
}
