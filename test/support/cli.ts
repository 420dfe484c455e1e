/**
 * Runs the BUILT CLI as a subprocess in a throwaway HOME with XDG_* dirs, and checks that no token
 * or secret it knows of ever shows up in stdout or stderr.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const CLI = join(ROOT, "dist", "nix-cache-login.cjs");

export function requireBuild(): void {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (npm test does it)`);
}

export interface Workspace {
  dir: string;
  home: string;
  env: Record<string, string>;
  configPath: string;
  netrcPath: string;
  stateDir: string;
  secrets: Set<string>;
  writeConfig(values: Record<string, unknown> | string): Promise<void>;
  cleanup(): Promise<void>;
}

function tomlValue(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(tomlValue).join(", ")}]`;
  if (typeof v === "number") return String(v);
  return JSON.stringify(v);
}

export async function makeWorkspace(config?: Record<string, unknown>): Promise<Workspace> {
  const dir = await mkdtemp(join(tmpdir(), "ncl-test-"));
  const home = join(dir, "home");
  await mkdir(home, { recursive: true });
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: home,
    XDG_CONFIG_HOME: join(home, ".config"),
    XDG_STATE_HOME: join(home, ".local", "state"),
    XDG_CACHE_HOME: join(home, ".cache"),
    LANG: "C.UTF-8",
    NODE_NO_WARNINGS: "1",
  };
  const ws: Workspace = {
    dir,
    home,
    env,
    configPath: join(env.XDG_CONFIG_HOME as string, "nix-cache-login", "config.toml"),
    netrcPath: join(env.XDG_CONFIG_HOME as string, "nix", "netrc"),
    stateDir: join(env.XDG_STATE_HOME as string, "nix-cache-login"),
    secrets: new Set(),
    async writeConfig(values) {
      const text =
        typeof values === "string"
          ? values
          : Object.entries(values)
              .map(([k, v]) => `${k} = ${tomlValue(v)}\n`)
              .join("");
      await mkdir(join(env.XDG_CONFIG_HOME as string, "nix-cache-login"), { recursive: true });
      await writeFile(ws.configPath, text);
    },
    async cleanup() {
      await rm(dir, { recursive: true, force: true });
    },
  };
  if (config !== undefined) await ws.writeConfig(config);
  return ws;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Collects every token on disk in the workspace, so later output can be checked against them. */
export async function harvestSecrets(ws: Workspace): Promise<void> {
  const add = (s: unknown) => {
    if (typeof s === "string" && s.length >= 8) ws.secrets.add(s);
  };
  const netrc = await readFile(ws.netrcPath, "latin1").catch(() => "");
  for (const m of netrc.matchAll(/login\s+nix-cache-login\s+password\s+(\S+)/g)) add(m[1]);
  const files = await readdir(ws.stateDir).catch(() => [] as string[]);
  const { lstat } = await import("node:fs/promises");
  for (const f of files.filter((f) => f.endsWith(".json"))) {
    // A test may leave a corrupt state file on purpose, or a FIFO, which reading would wait on.
    let state: Record<string, unknown>;
    try {
      if (!(await lstat(join(ws.stateDir, f))).isFile()) continue;
      state = JSON.parse(await readFile(join(ws.stateDir, f), "utf8")) as Record<string, unknown>;
    } catch {
      continue;
    }
    add(state.refresh_token);
  }
}

export function assertNoSecrets(ws: Workspace, text: string, what: string): void {
  for (const s of ws.secrets) {
    assert.ok(!text.includes(s), `${what} leaked a secret (${s.slice(0, 6)}...)`);
  }
}

export interface RunOptions {
  env?: Record<string, string | undefined>;
  timeoutMs?: number;
  onSpawn?: (child: import("node:child_process").ChildProcess) => void;
  /** A command in front of node, e.g. faketime (withClock) or /usr/bin/time -v. */
  wrapper?: string[];
}

/**
 * The wrapper that runs the CLI (and only it) with its clock shifted by `shift` ("+2h", "-2h"):
 * Debian's libfaketime. Monotonic time stays real, so timeouts still work.
 */
export function withClock(shift: string): { wrapper: string[] } {
  return { wrapper: ["env", "FAKETIME_DONT_FAKE_MONOTONIC=1", "faketime", "-f", shift] };
}

export async function runCli(ws: Workspace, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  requireBuild();
  for (const a of args) assertNoSecrets(ws, a, "argv");
  const env: Record<string, string> = { ...ws.env };
  for (const [k, v] of Object.entries(opts.env ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  const [command, ...prefix] = [...(opts.wrapper ?? []), process.execPath];
  const child = spawn(command as string, [...prefix, CLI, ...args], {
    env,
    cwd: ws.dir,
    stdio: ["ignore", "pipe", "pipe"],
  });
  opts.onSpawn?.(child);
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 60_000);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
    child.on("close", (c, s) => resolve([c, s])),
  );
  clearTimeout(timer);
  await harvestSecrets(ws);
  assertNoSecrets(ws, stdout, `stdout of ${args.join(" ")}`);
  assertNoSecrets(ws, stderr, `stderr of ${args.join(" ")}`);
  return { code, signal, stdout, stderr };
}

/** The password of the first one-line `machine HOST login X password P` entry in a netrc text. */
export function netrcPassword(text: string, host: string): string | undefined {
  const re = new RegExp(`machine\\s+${host.replace(/\./g, "\\.")}\\s+login\\s+\\S+\\s+password\\s+(\\S+)`);
  return re.exec(text)?.[1];
}

/** True when nothing accepts connections on 127.0.0.1:port (a server closed and freed it). */
export function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(false);
    });
    socket.once("error", () => resolve(true));
  });
}

/** Every file under dir with its bytes and mode, to prove a failed command changed nothing. */
export async function snapshot(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const { stat } = await import("node:fs/promises");
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = join(d, e.name);
      if (e.isDirectory()) {
        out.set(p, `dir ${((await stat(p)).mode & 0o777).toString(8)}`);
        await walk(p);
      } else if (e.isFile()) {
        const st = await stat(p);
        out.set(
          p,
          `${(st.mode & 0o777).toString(8)} ${st.mtimeMs} ${(await readFile(p)).toString("base64")}`,
        );
      }
    }
  };
  await walk(dir);
  return out;
}
