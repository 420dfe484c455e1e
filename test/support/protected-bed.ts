// The whole chain for Nix end-to-end tests: a realm (oidc-provider), a binary cache made with the
// real Nix, Apache + mod_auth_openidc protecting it with the realm's tokens, and helpers that ask
// the real clients (nix-store, curl) whether a netrc gets them in.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startProtectedCache, type ProtectedCache } from "./cache.ts";
import { StateStore, type TokenState } from "../../src/store/state.ts";
import { writeState } from "../../src/store/write.ts";
import { makeWorkspace, netrcPassword, type Workspace } from "./cli.ts";
import {
  isValidPath,
  makeBinaryCache,
  makeNixEnv,
  nixStoreDelete,
  nixStoreRealise,
  readStoreFile,
  run,
  type NixEnv,
  type RunResult,
} from "./nix.ts";
import { startRealm, type Realm, type RealmOptions } from "./realm.ts";

export const HOST = "127.0.0.1";
export const FILES = { "hello.txt": "hello through the protected cache\n" };

export interface Protected {
  realm: Realm;
  cache: ProtectedCache;
}

export interface Bed extends Protected {
  dir: string;
  nix: NixEnv;
  cacheDir: string;
  /** Store paths in the binary cache (and not in the local store). */
  paths: string[];
  /** Another realm with its own protected cache over the same binary cache (e.g. short TTLs). */
  protectedBy(opts: RealmOptions): Promise<Protected>;
  /** A workspace whose config points at `p` (service account unless `user`). */
  workspace(p: Protected, opts?: { user?: boolean; extra?: Record<string, unknown> }): Promise<Workspace>;
  stop(): Promise<void>;
}

async function protect(realm: Realm, cacheDir: string): Promise<ProtectedCache> {
  assert.ok(realm.jwksUriTls && realm.caCertPath, "the realm was started without TLS");
  return startProtectedCache({
    cacheDir,
    issuer: realm.issuer,
    jwksUri: realm.jwksUriTls,
    caBundle: realm.caCertPath,
    audience: realm.audience,
  });
}

export async function startBed(opts: RealmOptions = {}): Promise<Bed> {
  const dir = await mkdtemp(join(tmpdir(), "ncl-nix-"));
  const stoppers: (() => Promise<void>)[] = [];
  const workspaces: Workspace[] = [];
  try {
    const nix = await makeNixEnv(join(dir, "nix"));
    const cacheDir = join(dir, "binary-cache");
    const paths = Object.values(await makeBinaryCache(nix, cacheDir, FILES));
    const protectedBy = async (o: RealmOptions): Promise<Protected> => {
      const realm = await startRealm(o);
      stoppers.push(() => realm.stop());
      const cache = await protect(realm, cacheDir);
      stoppers.push(() => cache.stop());
      return { realm, cache };
    };
    const main = await protectedBy(opts);
    const bed: Bed = {
      ...main,
      dir,
      nix,
      cacheDir,
      paths,
      protectedBy,
      async workspace(p, o = {}) {
        const ws = await makeWorkspace();
        workspaces.push(ws);
        const config: Record<string, unknown> = {
          issuer: p.realm.issuer,
          client_id: o.user === true ? p.realm.publicClientId : p.realm.serviceClientId,
          cache_host: HOST,
          cache_url: p.cache.url,
        };
        if (o.user !== true) {
          const secretFile = join(ws.dir, "client-secret");
          await writeFile(secretFile, `${p.realm.serviceClientSecret}\n`, { mode: 0o600 });
          ws.secrets.add(p.realm.serviceClientSecret);
          config.client_secret_file = secretFile;
        }
        await ws.writeConfig({ ...config, ...o.extra });
        return ws;
      },
      async stop() {
        const results = await Promise.allSettled(stoppers.reverse().map((s) => s()));
        for (const ws of workspaces) await ws.cleanup();
        await rm(dir, { recursive: true, force: true });
        for (const r of results) if (r.status === "rejected") throw r.reason;
      },
    };
    return bed;
  } catch (e) {
    await Promise.allSettled(stoppers.reverse().map((s) => s()));
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
}

/** `nix-store -r` through `cache` with `netrcFile`; must succeed, and the path must hold the file. */
export async function assertNixFetches(
  bed: Bed,
  cache: ProtectedCache,
  netrcFile: string,
  what: string,
): Promise<RunResult> {
  for (const p of bed.paths) assert.equal(await isValidPath(bed.nix, p), false, `${p} already in the store`);
  const r = await nixStoreRealise(bed.nix, bed.paths, { substituter: cache.url, netrcFile });
  assert.equal(r.code, 0, `${what}: nix-store -r failed:\n${r.stderr}`);
  assert.deepEqual(
    await Promise.all(bed.paths.map((p) => readStoreFile(bed.nix, p))),
    Object.values(FILES),
    `${what}: contents`,
  );
  await nixStoreDelete(bed.nix, bed.paths);
  return r;
}

/** `nix-store -r` through `cache` with `netrcFile`; must fail and leave the store without the paths. */
export async function assertNixRefused(
  bed: Bed,
  cache: ProtectedCache,
  netrcFile: string,
  what: string,
): Promise<void> {
  const r = await nixStoreRealise(bed.nix, bed.paths, { substituter: cache.url, netrcFile });
  assert.notEqual(r.code, 0, `${what}: nix-store -r fetched the paths`);
  assert.match(r.stderr, /don't know how to build|does not appear to be a binary cache/, what);
  for (const p of bed.paths)
    assert.equal(await isValidPath(bed.nix, p), false, `${what}: ${p} is in the store`);
}

/**
 * `nix-store -r` with only the settings in the Nix env's nix.conf for credentials (no
 * `--option netrc-file`): what a user gets from their configuration.
 */
export async function nixRealiseWithConf(bed: Bed, cache: ProtectedCache): Promise<RunResult> {
  const xdgCache = await mkdtemp(join(bed.nix.dir, "xdg-cache-"));
  try {
    return await run(
      "/usr/bin/nix-store",
      ["-r", ...bed.paths, "--option", "substituters", cache.url, "--option", "connect-timeout", "5"],
      { env: { ...bed.nix.env, XDG_CACHE_HOME: xdgCache } },
    );
  } finally {
    await rm(xdgCache, { recursive: true, force: true });
  }
}

/** Rewrites the Nix env's nix.conf with one `netrc-file` line (any earlier ones are dropped). */
export async function setNixNetrcFile(bed: Bed, netrcFile: string): Promise<void> {
  const { readFile } = await import("node:fs/promises");
  const file = join(bed.nix.confDir, "nix.conf");
  const conf = await readFile(file, "utf8");
  const others = conf.split("\n").filter((l) => l !== "" && !/^netrc-file\s*=/.test(l));
  await writeFile(file, [...others, `netrc-file = ${netrcFile}`, ""].join("\n"));
}

export interface CurlResult {
  status: number;
  wwwAuthenticate: string;
}

/** curl with a netrc file; `resolve` maps a host name to 127.0.0.1 (curl --resolve). */
export function curl(url: string, netrcFile: string, resolve?: string): Promise<CurlResult> {
  const args = [
    "-sS",
    "-o",
    "/dev/null",
    "-D",
    "-",
    "-w",
    "%{http_code}",
    "--max-time",
    "10",
    "--netrc-file",
    netrcFile,
  ];
  if (resolve !== undefined) args.push("--resolve", resolve);
  args.push(url);
  return new Promise((resolvePromise, reject) =>
    execFile("curl", args, (err, stdout) => {
      if (err) return reject(err);
      const m = /^www-authenticate:\s*(.*)$/im.exec(stdout);
      resolvePromise({ status: Number(stdout.slice(-3)), wwwAuthenticate: m?.[1]?.trim() ?? "" });
    }),
  );
}

/** The netrc password of `host` (first `machine host` entry), as the CLI writes it. */

export async function writeNetrc(ws: Workspace, text: string, mode = 0o600): Promise<void> {
  await mkdir(join(ws.netrcPath, ".."), { recursive: true, mode: 0o700 });
  await writeFile(ws.netrcPath, text, { mode });
  const { chmod } = await import("node:fs/promises");
  await chmod(ws.netrcPath, mode);
}

/**
 * What the passing of time does to a workspace's token, without waiting for it: the access token in
 * the netrc and in the token state is replaced by a copy that expired a minute ago, signed with the
 * realm's own key (so only `exp` tells it from the real one), and the state records that expiry.
 * Returns the expired token.
 */
export async function expireToken(ws: Workspace, p: Protected, clientId: string): Promise<string> {
  const { readFile } = await import("node:fs/promises");
  const netrc = await readFile(ws.netrcPath, "utf8");
  const current = netrcPassword(netrc, HOST);
  assert.ok(current !== undefined, `no ${HOST} entry in ${ws.netrcPath}`);
  const exp = Math.floor(Date.now() / 1000) - 60;
  const expired = p.realm.withClaims(current, { exp });
  ws.secrets.add(expired);
  await writeFile(ws.netrcPath, netrc.replace(current, expired));
  const store = new StateStore(ws.stateDir, p.realm.issuer, clientId);
  const state = JSON.parse(await readFile(store.file, "utf8")) as TokenState;
  await writeState(store, {
    ...state,
    access_token: expired,
    access_token_expires_at: new Date(exp * 1000).toISOString(),
  });
  return expired;
}

/** A user's session seeded at the realm, its refresh token stored as `login` would. */
export async function seedUserSession(ws: Workspace, p: Protected): Promise<void> {
  const tokens = await p.realm.signIn();
  ws.secrets.add(tokens.refresh_token);
  ws.secrets.add(tokens.access_token);
  const store = new StateStore(ws.stateDir, p.realm.issuer, p.realm.publicClientId);
  await writeState(store, { ...store.empty("user"), refresh_token: tokens.refresh_token });
}

/** Fails loudly (never skips) when a check needs root, as the tests run in CI. */
export function requireRoot(what: string): void {
  if (process.getuid?.() !== 0) {
    throw new Error(
      `${what} needs root (it chowns a file to another uid); run the tests as root, as CI does`,
    );
  }
}
