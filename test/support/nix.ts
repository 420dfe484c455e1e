// Helpers around Debian's nix-bin (Nix 2.8) for end-to-end tests: a single-user chroot store in a
// temp directory, a file:// binary cache built from it, and `nix-store -r` substituting from an
// http(s) cache with a given netrc file — the real client whose netrc the CLI writes.
import { execFile, spawn } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";

export const NIX_INSTALL_HINT = "run `apt-get install -y --no-install-recommends nix-bin`";

const NIX_BIN_DIR = "/usr/bin";
const NIX_STORE = join(NIX_BIN_DIR, "nix-store");
const NIX = join(NIX_BIN_DIR, "nix");

/** Throws (never skips) when Debian's nix-bin is missing. */
export function requireNix(): void {
  for (const bin of [NIX_STORE, NIX]) {
    try {
      accessSync(bin, constants.X_OK);
    } catch {
      throw new Error(`nix-bin is not installed: ${NIX_INSTALL_HINT} (missing ${bin})`);
    }
  }
}

export interface NixEnv {
  /** Environment for every nix command: NIX_CONF_DIR, HOME, XDG_CACHE_HOME in temp dirs. */
  env: NodeJS.ProcessEnv;
  /** The chroot store root; store path /nix/store/X lives at storeRoot + /nix/store/X. */
  storeRoot: string;
  /** The directory given to makeNixEnv (all state lives under it). */
  dir: string;
  /** NIX_CONF_DIR (holds nix.conf). */
  confDir: string;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  durationMs: number;
}

/** Runs a command without a shell; never rejects on a non-zero exit (see `code`). */
export function run(
  cmd: string,
  args: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<RunResult> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      stderr += `\n[test harness] killed after ${opts.timeoutMs} ms`;
      child.kill("SIGKILL");
    }, opts.timeoutMs ?? 60_000);
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, durationMs: performance.now() - started });
    });
  });
}

async function runOk(cmd: string, args: readonly string[], env: NodeJS.ProcessEnv): Promise<RunResult> {
  const r = await run(cmd, args, { env });
  if (r.code !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} exited with ${r.code ?? r.signal}:\n${r.stderr}${r.stdout}`);
  }
  return r;
}

/**
 * Creates a single-user Nix setup under `dir` (created if missing): a chroot store at
 * `dir/root` (logical store dir stays /nix/store), nix.conf in `dir/conf`, HOME and
 * XDG_CACHE_HOME under `dir`. No substituters, no signatures required, no negative narinfo cache
 * (and nixStoreRealise uses a fresh XDG_CACHE_HOME per call, so no narinfo cache at all).
 */
export async function makeNixEnv(dir: string): Promise<NixEnv> {
  requireNix();
  const confDir = join(dir, "conf");
  const home = join(dir, "home");
  const xdgCache = join(dir, "xdg-cache");
  const storeRoot = join(dir, "root");
  await Promise.all([confDir, home, xdgCache, storeRoot].map((d) => mkdir(d, { recursive: true })));
  const conf = [
    `store = ${storeRoot}`,
    "build-users-group =",
    "sandbox = false",
    "experimental-features = nix-command",
    "substituters =",
    "require-sigs = false",
    "narinfo-cache-negative-ttl = 0",
    // A netrc nobody writes: without an explicit netrc-file nix-store sends no credentials.
    `netrc-file = ${join(confDir, "netrc")}`,
    "",
  ].join("\n");
  await writeFile(join(confDir, "nix.conf"), conf);
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    NIX_CONF_DIR: confDir,
    HOME: home,
    XDG_CACHE_HOME: xdgCache,
    XDG_CONFIG_HOME: join(home, ".config"),
    XDG_DATA_HOME: join(home, ".local/share"),
    LANG: "C",
  };
  return { env, storeRoot, dir, confDir };
}

/** Where a store path's contents live on disk in the chroot store. */
export function storePathOnDisk(nix: NixEnv, storePath: string): string {
  return join(nix.storeRoot, storePath);
}

/** True when `storePath` is valid (registered and present) in the local chroot store. */
export async function isValidPath(nix: NixEnv, storePath: string): Promise<boolean> {
  const r = await run(NIX_STORE, ["--check-validity", storePath], { env: nix.env });
  return r.code === 0;
}

/** Deletes store paths from the local chroot store so they must be substituted again. */
export async function nixStoreDelete(nix: NixEnv, storePaths: readonly string[]): Promise<void> {
  if (storePaths.length === 0) return;
  await runOk(NIX_STORE, ["--delete", ...storePaths], nix.env);
  for (const p of storePaths) {
    if (await isValidPath(nix, p)) throw new Error(`${p} is still valid after nix-store --delete`);
  }
}

/**
 * Builds a file:// binary cache in `cacheDir` holding one store path per entry of `files`
 * (`nix-store --add` of a file with that name and content), then deletes the paths from the
 * local store so that realising them must go through a substituter. Returns name -> store path.
 * The cache is made world-readable (Apache drops to www-data).
 */
export async function makeBinaryCache(
  nix: NixEnv,
  cacheDir: string,
  files: Record<string, string>,
): Promise<Record<string, string>> {
  const srcDir = await mkdtemp(join(nix.dir, "src-"));
  const paths: Record<string, string> = {};
  try {
    for (const [name, content] of Object.entries(files)) {
      if (!/^[A-Za-z0-9+_?=-][A-Za-z0-9+._?=-]*$/.test(name)) throw new Error(`bad store name ${name}`);
      const file = join(srcDir, name);
      await writeFile(file, content);
      const r = await runOk(NIX_STORE, ["--add", file], nix.env);
      paths[name] = r.stdout.trim();
    }
  } finally {
    await rm(srcDir, { recursive: true, force: true });
  }
  const storePaths = Object.values(paths);
  await mkdir(cacheDir, { recursive: true, mode: 0o755 });
  await runOk(NIX, ["copy", "--to", `file://${cacheDir}`, ...storePaths], nix.env);
  await nixStoreDelete(nix, storePaths);
  // nix writes files 0644 and dirs 0755; check the cache marker exists as a sanity check.
  const info = await readFile(join(cacheDir, "nix-cache-info"), "utf8");
  if (!info.includes("StoreDir: /nix/store")) throw new Error(`unexpected nix-cache-info: ${info}`);
  return paths;
}

export interface RealiseOptions {
  /** Substituter URL, e.g. http://127.0.0.1:PORT */
  substituter: string;
  /** netrc file for Nix's curl; when omitted, a path that does not exist (no credentials). */
  netrcFile?: string;
  timeoutMs?: number;
}

/**
 * `nix-store -r PATHS --option substituters URL --option netrc-file NETRC`, in a fresh
 * XDG_CACHE_HOME (no cached nix-cache-info or narinfo from an earlier call can make a retry
 * lie). Nix 2.8 prints no HTTP status on a rejected token: judge by `code` and the store.
 */
export async function nixStoreRealise(
  nix: NixEnv,
  storePaths: string | readonly string[],
  opts: RealiseOptions,
): Promise<RunResult> {
  const list = typeof storePaths === "string" ? [storePaths] : [...storePaths];
  const xdgCache = await mkdtemp(join(nix.dir, "xdg-cache-"));
  try {
    const netrc = opts.netrcFile ?? join(nix.confDir, "no-such-netrc");
    return await run(
      NIX_STORE,
      [
        "-r",
        ...list,
        "--option",
        "substituters",
        opts.substituter,
        "--option",
        "netrc-file",
        netrc,
        "--option",
        "narinfo-cache-negative-ttl",
        "0",
        "--option",
        "connect-timeout",
        "5",
      ],
      { env: { ...nix.env, XDG_CACHE_HOME: xdgCache }, timeoutMs: opts.timeoutMs ?? 60_000 },
    );
  } finally {
    await rm(xdgCache, { recursive: true, force: true });
  }
}

/** Reads a realised store path that is a regular file (as made by makeBinaryCache). */
export async function readStoreFile(nix: NixEnv, storePath: string): Promise<string> {
  const p = storePathOnDisk(nix, storePath);
  const s = await stat(p);
  if (!s.isFile()) throw new Error(`${storePath} is not a regular file`);
  return readFile(p, "utf8");
}

/** Nix version string, e.g. "nix-store (Nix) 2.8.0". */
export async function nixVersion(): Promise<string> {
  requireNix();
  return new Promise((resolve, reject) =>
    execFile(NIX_STORE, ["--version"], (err, stdout) => (err ? reject(err) : resolve(stdout.trim()))),
  );
}
