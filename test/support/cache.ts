// A protected Nix binary cache for end-to-end tests: Debian's Apache httpd with mod_auth_openidc
// as an OAuth 2.0 resource server that takes the access token as the HTTP Basic password (as Nix
// sends a netrc password), verifies its signature against the realm's JWKS (fetched over https),
// and requires the realm's `iss` and the cache's `aud`. Own ServerRoot in a temp dir, 127.0.0.1 only.
import { spawn, type ChildProcess } from "node:child_process";
import { accessSync, constants, readFileSync } from "node:fs";
import {
  chmod,
  copyFile,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  realpath,
  rm,
  stat,
  writeFile,
} from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, sep } from "node:path";
import { freePort } from "./ports.ts";

export const APACHE_INSTALL_HINT =
  "run `apt-get install -y --no-install-recommends apache2 libapache2-mod-auth-openidc`";

const APACHE_BIN = "/usr/sbin/apache2";
const MODULE_DIR = "/usr/lib/apache2/modules";
const MODULES = {
  mpm_event_module: "mod_mpm_event.so",
  authn_core_module: "mod_authn_core.so",
  authz_core_module: "mod_authz_core.so",
  authz_user_module: "mod_authz_user.so",
  mime_module: "mod_mime.so",
  auth_openidc_module: "mod_auth_openidc.so",
} as const;
/** The unprivileged user Apache's children switch to when started as root. */
const RUN_USER = "www-data";

/** Throws (never skips) when apache2 or mod_auth_openidc is missing. */
export function requireApache(): void {
  const needed = [APACHE_BIN, ...Object.values(MODULES).map((m) => join(MODULE_DIR, m))];
  for (const file of needed) {
    try {
      accessSync(file, file === APACHE_BIN ? constants.X_OK : constants.R_OK);
    } catch {
      const pkg = file.endsWith("mod_auth_openidc.so") ? "libapache2-mod-auth-openidc" : "apache2";
      throw new Error(`${pkg} is not installed: ${APACHE_INSTALL_HINT} (missing ${file})`);
    }
  }
}

export interface ProtectedCacheOptions {
  /** Directory to serve (a file:// binary cache made with `nix copy`). */
  cacheDir: string;
  /** Expected `iss` claim, e.g. http://127.0.0.1:PORT/realms/test */
  issuer?: string;
  /** JWKS URL; must be https (mod_auth_openidc refuses plain http). */
  jwksUri?: string;
  /** PEM file with the CA (or self-signed cert) for the JWKS listener. */
  caBundle?: string;
  /** Expected `aud` claim, e.g. urn:nix-cache */
  audience?: string;
  /** false: serve the same directory without any authentication (benchmark baseline). */
  protected?: boolean;
  /** mod_auth_openidc log level (default "info"; "debug" explains every decision). */
  oidcLogLevel?: "warn" | "info" | "debug";
  /**
   * Answer 403 (not 401) to a request without credentials, as some caches in front of Nix do
   * (an authorization rule that denies before authentication asks for credentials).
   */
  forbidWithoutCredentials?: boolean;
}

export interface ProtectedCache {
  /** http://127.0.0.1:PORT (no trailing slash) */
  url: string;
  port: number;
  pid: number;
  /** The generated httpd.conf (for debugging). */
  config: string;
  /** Current contents of Apache's error log (mod_auth_openidc explains 401s here). */
  errorLog(): string;
  /** Current contents of the access log: `%h %u %t "%r" %>s %b`. */
  accessLog(): string;
  stop(): Promise<void>;
}

function portAccepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ host: "127.0.0.1", port });
    sock.setTimeout(1000);
    sock.once("connect", () => {
      sock.destroy();
      resolve(true);
    });
    sock.once("timeout", () => {
      sock.destroy();
      resolve(false);
    });
    sock.once("error", () => resolve(false));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function lookupUser(name: string): { uid: number; gid: number } | undefined {
  for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
    const f = line.split(":");
    if (f[0] === name && f[2] !== undefined && f[3] !== undefined) {
      return { uid: Number(f[2]), gid: Number(f[3]) };
    }
  }
  return undefined;
}

/** Runs `test ARGS` as uid/gid; true when it exits 0. */
function testAs(ids: { uid: number; gid: number }, args: string[]): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn("/usr/bin/test", args, { uid: ids.uid, gid: ids.gid, stdio: "ignore" });
    child.on("error", () => resolve(false));
    child.on("close", (code) => resolve(code === 0));
  });
}

async function makeWorldReadable(dir: string): Promise<void> {
  const s = await lstat(dir);
  if (s.isSymbolicLink()) return;
  if (s.isDirectory()) {
    if ((s.mode & 0o005) !== 0o005) await chmod(dir, (s.mode & 0o7777) | 0o005);
    for (const entry of await readdir(dir)) await makeWorldReadable(join(dir, entry));
  } else if ((s.mode & 0o004) === 0) {
    await chmod(dir, (s.mode & 0o7777) | 0o004);
  }
}

/**
 * When we are root, Apache's children run as www-data: the cache must be readable by it. The
 * cache tree is made world-readable; ancestors without o+x are fixed only inside the OS temp dir
 * (mkdtemp makes 0700 dirs), anything else is an error. Verified by running test(1) as www-data.
 */
async function ensureApacheCanRead(cacheDir: string): Promise<void> {
  if (process.getuid?.() !== 0) return; // Apache keeps our uid: it can read what we can.
  const ids = lookupUser(RUN_USER);
  if (ids === undefined) throw new Error(`user ${RUN_USER} does not exist (it comes with apache2)`);
  const real = await realpath(cacheDir);
  await makeWorldReadable(real);
  const tmp = await realpath(tmpdir());
  for (let d = dirname(real); ; d = dirname(d)) {
    const s = await stat(d);
    if ((s.mode & 0o001) === 0) {
      if (d.startsWith(tmp + sep)) await chmod(d, (s.mode & 0o7777) | 0o001);
      else throw new Error(`${RUN_USER} cannot traverse ${d} to reach the cache ${real}; chmod o+x it`);
    }
    if (d === dirname(d)) break;
  }
  if (!(await testAs(ids, ["-r", join(real, "nix-cache-info")]))) {
    throw new Error(`${RUN_USER} cannot read ${join(real, "nix-cache-info")}`);
  }
}

function quote(value: string): string {
  if (/["\\\n\r]/.test(value)) throw new Error(`cannot put ${JSON.stringify(value)} in httpd.conf`);
  return `"${value}"`;
}

function claimValue(value: string): string {
  // `Require claim NAME:VALUE` takes one whitespace-free word.
  if (/[\s"\\]/.test(value)) throw new Error(`claim value ${JSON.stringify(value)} has spaces or quotes`);
  return value;
}

function httpdConf(o: {
  root: string;
  port: number;
  cacheDir: string;
  protect: boolean;
  issuer: string;
  jwksUri: string;
  caBundle: string;
  audience: string;
  oidcLogLevel: string;
  asRoot: boolean;
  forbidWithoutCredentials: boolean;
}): string {
  const lines = [
    `ServerRoot ${quote(o.root)}`,
    "ServerName 127.0.0.1",
    `Listen 127.0.0.1:${o.port}`,
    `PidFile ${quote(join(o.root, "run", "httpd.pid"))}`,
    `DefaultRuntimeDir ${quote(join(o.root, "run"))}`,
    `Mutex ${quote(`file:${join(o.root, "run")}`)} default`,
    ...Object.entries(MODULES)
      .filter(([name]) => o.protect || name !== "auth_openidc_module")
      .map(([name, file]) => `LoadModule ${name} ${quote(join(MODULE_DIR, file))}`),
    ...(o.asRoot ? [`User ${RUN_USER}`, `Group ${RUN_USER}`] : []),
    `ErrorLog ${quote(join(o.root, "logs", "error.log"))}`,
    `LogLevel warn${o.protect ? ` auth_openidc:${o.oidcLogLevel}` : ""}`,
    'LogFormat "%h %u %t \\"%r\\" %>s %b" common',
    `CustomLog ${quote(join(o.root, "logs", "access.log"))} common`,
    "TypesConfig /etc/mime.types",
    "AddType text/x-nix-narinfo .narinfo",
    "StartServers 1",
    "ServerLimit 2",
    "ThreadsPerChild 16",
    "MaxRequestWorkers 32",
    "KeepAlive On",
    "Timeout 30",
    `DocumentRoot ${quote(o.cacheDir)}`,
    "<Directory />",
    "  Options None",
    "  AllowOverride None",
    "  Require all denied",
    "</Directory>",
    `<Directory ${quote(o.cacheDir)}>`,
    "  Options None",
    "  AllowOverride None",
    "  Require all granted",
    "</Directory>",
  ];
  if (o.protect) {
    lines.push(
      `OIDCOAuthVerifyJwksUri ${quote(o.jwksUri)}`,
      `OIDCCABundlePath ${quote(o.caBundle)}`,
      // Token as the password of HTTP Basic auth (what Nix sends from a netrc); Bearer also works.
      "OIDCOAuthAcceptTokenAs header basic",
      // client_credentials tokens carry no preferred_username.
      "OIDCOAuthRemoteUserClaim sub",
      "<Location />",
      "  AuthType oauth20",
      "  <RequireAll>",
      // Evaluated first: without an Authorization header this denies (403) before valid-user
      // could ask for credentials (401).
      ...(o.forbidWithoutCredentials ? ['    Require expr "-n %{HTTP:Authorization}"'] : []),
      "    Require valid-user",
      // mod_auth_openidc checks neither iss nor aud of an access token by itself.
      `    Require claim iss:${claimValue(o.issuer)}`,
      `    Require claim aud:${claimValue(o.audience)}`,
      "  </RequireAll>",
      "</Location>",
    );
  }
  return lines.join("\n") + "\n";
}

function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    child.once("exit", () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

/**
 * Starts Apache serving `cacheDir` on 127.0.0.1:random. With `protected` (default) every request
 * needs a JWT access token signed by a key in `jwksUri`, with `iss` = issuer and `aud` = audience,
 * sent as the Basic password (any login) or as a Bearer token. Resolves once it answers HTTP.
 */
export async function startProtectedCache(opts: ProtectedCacheOptions): Promise<ProtectedCache> {
  requireApache();
  const protect = opts.protected ?? true;
  if (protect) {
    for (const k of ["issuer", "jwksUri", "caBundle", "audience"] as const) {
      if (!opts[k]) throw new Error(`startProtectedCache: ${k} is required when protected`);
    }
    if (!opts.jwksUri?.startsWith("https://")) {
      throw new Error("startProtectedCache: mod_auth_openidc only fetches the JWKS over https");
    }
  }
  const cacheDir = await realpath(opts.cacheDir);
  await ensureApacheCanRead(cacheDir);

  const root = await mkdtemp(join(tmpdir(), "nix-cache-httpd-"));
  await mkdir(join(root, "run"), { recursive: true });
  await mkdir(join(root, "logs"), { recursive: true });
  // mod_auth_openidc reads the CA bundle in the children (www-data when we are root), at the first
  // JWKS fetch: the caller's copy often sits in a 0700 temp dir, so serve it a readable copy.
  await chmod(root, 0o711);
  let caBundle = "";
  if (protect && opts.caBundle) {
    caBundle = join(root, "ca-bundle.pem");
    await copyFile(opts.caBundle, caBundle);
    await chmod(caBundle, 0o644);
  }
  const errorLogPath = join(root, "logs", "error.log");
  const accessLogPath = join(root, "logs", "access.log");
  const readLog = (p: string) => {
    try {
      return readFileSync(p, "utf8");
    } catch {
      return "";
    }
  };

  let lastError = "";
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const config = httpdConf({
      root,
      port,
      cacheDir,
      protect,
      issuer: opts.issuer ?? "",
      jwksUri: opts.jwksUri ?? "",
      caBundle,
      audience: opts.audience ?? "",
      oidcLogLevel: opts.oidcLogLevel ?? "info",
      asRoot: process.getuid?.() === 0,
      forbidWithoutCredentials: opts.forbidWithoutCredentials ?? false,
    });
    const confPath = join(root, "httpd.conf");
    await writeFile(confPath, config);
    await rm(errorLogPath, { force: true });

    // Own process group so stop() can also reach the children if the parent misbehaves.
    const child = spawn(APACHE_BIN, ["-f", confPath, "-DFOREGROUND"], {
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", LANG: "C" },
    });
    let output = "";
    child.stdout?.setEncoding("utf8").on("data", (d: string) => (output += d));
    child.stderr?.setEncoding("utf8").on("data", (d: string) => (output += d));
    const pid = child.pid;
    if (pid === undefined) throw new Error(`could not spawn ${APACHE_BIN}`);

    const deadline = Date.now() + 10_000;
    let up = false;
    while (Date.now() < deadline) {
      if (child.exitCode !== null || child.signalCode !== null) break;
      if (await portAccepts(port)) {
        up = true;
        break;
      }
      await sleep(20);
    }
    if (up) {
      // It accepts; make sure it answers HTTP (any status) before handing it out.
      const res = await fetch(`http://127.0.0.1:${port}/nix-cache-info`).catch((e: unknown) => e);
      if (res instanceof Response) {
        await res.arrayBuffer();
        let stopped = false;
        const cache: ProtectedCache = {
          url: `http://127.0.0.1:${port}`,
          port,
          pid,
          config,
          errorLog: () => readLog(errorLogPath),
          accessLog: () => readLog(accessLogPath),
          async stop() {
            if (stopped) return;
            stopped = true;
            if (child.exitCode === null && child.signalCode === null) {
              // SIGTERM to the parent: it stops its children and removes its PidFile.
              try {
                process.kill(pid, "SIGTERM");
              } catch {
                // already gone
              }
              if (!(await waitExit(child, 5000))) {
                killGroup(pid, "SIGKILL");
                await waitExit(child, 5000);
              }
            }
            killGroup(pid, "SIGKILL"); // stray children, if any
            for (let i = 0; i < 250 && (await portAccepts(port)); i++) await sleep(20);
            await rm(root, { recursive: true, force: true });
          },
        };
        return cache;
      }
      lastError = `no HTTP answer: ${String(res)}`;
    } else {
      lastError = `apache2 did not come up on port ${port}`;
    }
    // Failed attempt: collect why, clean up, maybe retry (e.g. the free port got taken).
    killGroup(pid, "SIGKILL");
    await waitExit(child, 5000);
    const log = readLog(errorLogPath);
    lastError += `\n--- apache2 output ---\n${output}\n--- error.log ---\n${log}`;
    if (!/Address already in use|could not bind/i.test(output + log)) break;
  }
  await rm(root, { recursive: true, force: true });
  throw new Error(`startProtectedCache failed: ${lastError}`);
}
