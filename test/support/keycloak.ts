// The real Keycloak for end-to-end tests: the server distribution from Maven Central
// (org.keycloak:keycloak-quarkus-dist, version and sha256 pinned in keycloak-dist.json), run with
// `kc.sh start-dev` on 127.0.0.1 only, on free ports, over HTTP and HTTPS (a self-signed certificate
// made at start, for mod_auth_openidc's JWKS fetch), with its H2 database in a temp dir, stopped by
// PID. See TESTBED.md, "The real Keycloak".
//
// prepareKeycloak() runs once per machine (under a lock, in a cache directory that survives runs):
// Maven fetches the zip, its sha256 is checked against the pinned value, it is unpacked, and one
// `start-dev` run does Keycloak's build step for the dev profile ("Updating the configuration ...",
// ~25 s here) and creates the database schema and the master realm with a bootstrap admin (~20 s).
// That database is kept as a template: every test run starts from a copy of it, in its own temp
// home (bin/kc.sh and conf copied, lib/themes/providers linked to the cache), so a start only boots.
import { withLockFile } from "../../src/fs/lock-file.ts";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, existsSync, openSync, closeSync, readdirSync, readFileSync } from "node:fs";
import {
  chmod,
  cp,
  copyFile,
  mkdir,
  mkdtemp,
  readFile,
  rename,
  rm,
  symlink,
  writeFile,
} from "node:fs/promises";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { makeTlsCertificate } from "./tls.ts";
import { freePort } from "./ports.ts";

const execFileP = promisify(execFile);

export interface KeycloakDist {
  artifact: string;
  version: string;
  sha256: string;
}

export const KEYCLOAK_DIST = JSON.parse(
  readFileSync(new URL("./keycloak-dist.json", import.meta.url), "utf8"),
) as KeycloakDist;

export const JAVA_INSTALL_HINT =
  "install a JDK/JRE 17 or later: `apt-get install -y --no-install-recommends openjdk-17-jre-headless` (bash scripts/test.sh does it)";
export const MAVEN_INSTALL_HINT =
  "install Maven: `apt-get install -y --no-install-recommends maven` (bash scripts/test.sh does it)";
export const UNZIP_INSTALL_HINT = "install unzip: `apt-get install -y --no-install-recommends unzip`";

/** Bump when the prepared layout changes, so old caches are prepared again. */
const PREPARED_FORMAT = 2;

/**
 * An empty realm made in the template database, so that a run does not pay for creating one (about
 * 12 s of a loaded 2-core machine). docs/provider-setup.md assumes the realm exists; its settings are the tests'.
 */
export const TEMPLATE_REALM = "test";

/** Where the distribution is kept between runs. */
export function testCacheRoot(): string {
  const explicit = process.env.NIX_CACHE_LOGIN_TEST_CACHE;
  if (explicit !== undefined && explicit !== "") return explicit;
  const xdg = process.env.XDG_CACHE_HOME;
  return join(xdg !== undefined && xdg !== "" ? xdg : join(homedir(), ".cache"), "nix-cache-login-tests");
}

function log(line: string): void {
  process.stderr.write(`[keycloak] ${line}\n`);
}

function javaCommand(): string {
  const home = process.env.JAVA_HOME;
  return home !== undefined && home !== "" ? join(home, "bin", "java") : "java";
}

/** Throws with the install command when no Java 17+ is found. Returns the major version. */
export async function requireJava(): Promise<number> {
  let text: string;
  try {
    const r = await execFileP(javaCommand(), ["-version"]);
    text = `${r.stderr}${r.stdout}`;
  } catch (e) {
    throw new Error(`Java is needed for the Keycloak tests (${(e as Error).message}); ${JAVA_INSTALL_HINT}`, {
      cause: e,
    });
  }
  const m = /version "(\d+)(?:\.(\d+))?/.exec(text);
  const major = m === null ? 0 : Number(m[1] === "1" ? m[2] : m[1]);
  if (major < 17)
    throw new Error(`Keycloak 26 needs Java 17 or later, found: ${text.trim()}; ${JAVA_INSTALL_HINT}`);
  return major;
}

async function requireCommand(cmd: string, args: string[], hint: string): Promise<void> {
  try {
    await execFileP(cmd, args);
  } catch (e) {
    throw new Error(`\`${cmd}\` is needed to fetch Keycloak (${(e as Error).message}); ${hint}`, {
      cause: e,
    });
  }
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

export interface PreparedKeycloak {
  version: string;
  /** The unpacked, built distribution (shared, read only after preparation). */
  dist: string;
  /** The H2 database (data/h2) with the schema and master realm, copied for every run. */
  templateH2: string;
  admin: { username: string; password: string };
}

interface ReadyMarker {
  format: number;
  sha256: string;
  admin: { username: string; password: string };
}

function paths(version: string) {
  const root = join(testCacheRoot(), `keycloak-${version}`);
  return {
    root,
    ready: join(root, "ready.json"),
    dist: join(root, "dist"),
    templateH2: join(root, "template-h2"),
    download: join(root, "download"),
  };
}

async function readReady(file: string): Promise<ReadyMarker | undefined> {
  try {
    const m = JSON.parse(await readFile(file, "utf8")) as ReadyMarker;
    return m.format === PREPARED_FORMAT && m.sha256 === KEYCLOAK_DIST.sha256 ? m : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Makes sure the pinned distribution is fetched, verified, unpacked, built for start-dev and has a
 * template database. Fast (one file read) when that was done before. Safe to call from parallel
 * processes: the work happens under a lock on the cache directory.
 */
export async function prepareKeycloak(): Promise<PreparedKeycloak> {
  const p = paths(KEYCLOAK_DIST.version);
  const done = (m: ReadyMarker): PreparedKeycloak => ({
    version: KEYCLOAK_DIST.version,
    dist: p.dist,
    templateH2: p.templateH2,
    admin: m.admin,
  });
  await requireJava();
  const ready = await readReady(p.ready);
  if (ready !== undefined) return done(ready);

  await mkdir(p.root, { recursive: true, mode: 0o700 });
  // Another run may be downloading (seconds) or building (about a minute on 2 cores): wait for it.
  return withLockFile(
    `${p.root}.lock`,
    async () => {
      const again = await readReady(p.ready);
      if (again !== undefined) return done(again);
      const started = performance.now();
      // The unpacked distribution is kept with the sha256 of the zip it came from: a new template
      // (PREPARED_FORMAT) does not need a new download.
      const unpackedFrom = join(p.dist, ".nix-cache-login-sha256");
      const distOk = (await readFile(unpackedFrom, "utf8").catch(() => "")).trim() === KEYCLOAK_DIST.sha256;
      if (!distOk) await fetchAndUnpack(p);
      // One start-dev in the distribution itself: the build step for the dev profile is saved in
      // lib/quarkus, and the database it creates becomes the template.
      const admin = { username: "admin", password: randomBytes(18).toString("base64url") };
      log(
        "first start (build for the dev profile, database schema, master and test realms): a minute or two",
      );
      const first = await startIn(p.dist, {
        env: { KC_BOOTSTRAP_ADMIN_USERNAME: admin.username, KC_BOOTSTRAP_ADMIN_PASSWORD: admin.password },
        readyTimeoutMs: 600_000,
      });
      try {
        const admin_ = new KeycloakAdmin({
          httpBase: `http://127.0.0.1:${first.port}`,
          admin,
          log: first.log,
        });
        await admin_.call("POST", "", { realm: TEMPLATE_REALM, enabled: true });
      } finally {
        await first.stop();
      }
      await rm(p.templateH2, { recursive: true, force: true });
      await rename(join(p.dist, "data", "h2"), p.templateH2);
      await rm(join(p.dist, "data"), { recursive: true, force: true });
      const marker: ReadyMarker = { format: PREPARED_FORMAT, sha256: KEYCLOAK_DIST.sha256, admin };
      await writeFile(p.ready, `${JSON.stringify(marker)}\n`, { mode: 0o600 });
      log(`prepared ${p.root} in ${Math.round(performance.now() - started)} ms`);
      return done(marker);
    },
    { maxWaitMs: 900_000, notify: (line) => log(line) },
  );
}

/** Maven fetches the zip, its sha256 is checked against the pinned one, unzip unpacks it. */
async function fetchAndUnpack(p: ReturnType<typeof paths>): Promise<void> {
  const zip = join(p.download, `keycloak-quarkus-dist-${KEYCLOAK_DIST.version}.zip`);
  if (!existsSync(zip)) {
    await requireCommand("mvn", ["-v"], MAVEN_INSTALL_HINT);
    const artifact = `${KEYCLOAK_DIST.artifact}:${KEYCLOAK_DIST.version}:zip`;
    const m2 = join(testCacheRoot(), "m2");
    const args = [
      "-q",
      "-B",
      "dependency:copy",
      `-Dartifact=${artifact}`,
      `-DoutputDirectory=${p.download}`,
      `-Dmaven.repo.local=${m2}`,
    ];
    log(`fetching ${artifact} with Maven: mvn ${args.join(" ")}`);
    try {
      await execFileP("mvn", args, { maxBuffer: 64 << 20 });
    } catch (e) {
      const err = e as { stdout?: string; stderr?: string; message: string };
      throw new Error(
        `could not fetch ${artifact}: mvn ${args.join(" ")} failed: ${err.message}\n${err.stdout ?? ""}${err.stderr ?? ""}`,
        { cause: e },
      );
    }
    // The zip now sits in the download dir; the copy in the local repository is not needed.
    await rm(
      join(m2, ...KEYCLOAK_DIST.artifact.split(":")[0]!.split("."), KEYCLOAK_DIST.artifact.split(":")[1]!),
      {
        recursive: true,
        force: true,
      },
    );
  }
  const sum = await sha256File(zip);
  if (sum !== KEYCLOAK_DIST.sha256) {
    await rename(zip, `${zip}.bad-${sum}`);
    throw new Error(
      `${zip}: sha256 ${sum} is not the pinned ${KEYCLOAK_DIST.sha256} (test/support/keycloak-dist.json); moved it aside`,
    );
  }
  log(`sha256 of ${zip} verified`);
  await requireCommand("unzip", ["-v"], UNZIP_INSTALL_HINT);
  const unpack = join(p.root, "unpack");
  await rm(unpack, { recursive: true, force: true });
  await rm(p.dist, { recursive: true, force: true });
  await execFileP("unzip", ["-q", zip, "-d", unpack], { maxBuffer: 64 << 20 });
  await rename(join(unpack, `keycloak-${KEYCLOAK_DIST.version}`), p.dist);
  await rm(unpack, { recursive: true, force: true });

  await rm(zip, { force: true });
  await writeFile(join(p.dist, ".nix-cache-login-sha256"), `${sum}\n`);
}

export interface Keycloak {
  version: string;
  /** http://127.0.0.1:PORT */
  httpBase: string;
  /** https://127.0.0.1:PORT (self-signed, see caCertPath) */
  httpsBase: string;
  port: number;
  tlsPort: number;
  caCertPath: string;
  pid: number;
  /** Milliseconds from spawning kc.sh to the master realm answering its discovery document. */
  startMs: number;
  /** CPU milliseconds the JVM used until then (a steadier figure than startMs on a busy machine). */
  startCpuMs: number | undefined;
  admin: { username: string; password: string };
  /** The server's output so far. */
  log(): string;
  stop(): Promise<void>;
}

function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    t.unref();
    child.once("exit", () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

/**
 * JVM flags added to kc.sh's own (KEYCLOAK_JAVA_OPTS_APPEND replaces them; empty for none). Only the
 * C1 compiler: a test run is short, and skipping C2's compilations halves the CPU time Keycloak needs
 * to start (measured on 2 cores: 18.3 s -> 9.5-10.7 s of CPU, in the report of issue 10).
 */
const JAVA_OPTS_APPEND = "-XX:TieredStopAtLevel=1";

interface StartOptions {
  env?: Record<string, string>;
  readyTimeoutMs?: number;
  tls?: { keyPath: string; certPath: string };
}

/** CPU time (user + system) the process group has used so far, from /proc (the JVM and kc.sh). */
function cpuMs(pgid: number): number | undefined {
  let ticks = 0;
  try {
    for (const entry of readdirSync("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const fields = readFileSync(`/proc/${entry}/stat`, "utf8")
          .replace(/^.*\) /s, "")
          .split(" ");
        // stat(5): pgrp is field 5, utime and stime fields 14 and 15, in clock ticks (100 per second).
        if (Number(fields[2]) === pgid) ticks += Number(fields[11]) + Number(fields[12]);
      } catch {
        // gone meanwhile
      }
    }
  } catch {
    return undefined;
  }
  return ticks * 10;
}

interface Started {
  startCpuMs: number | undefined;
  child: ChildProcess;
  pid: number;
  port: number;
  tlsPort: number;
  startMs: number;
  log(): string;
  stop(): Promise<void>;
}

/** Starts `home/bin/kc.sh start-dev` on 127.0.0.1 and waits until the master realm answers. */
async function startIn(home: string, opts: StartOptions = {}): Promise<Started> {
  const port = await freePort();
  let tlsPort = await freePort();
  while (tlsPort === port) tlsPort = await freePort();
  const logPath = join(home, "keycloak.log");
  const fd = openSync(logPath, "w");
  const args = [
    "start-dev",
    "--http-host=127.0.0.1",
    `--http-port=${port}`,
    `--https-port=${tlsPort}`,
    "--hostname-strict=false",
  ];
  if (opts.tls !== undefined) {
    args.push(
      `--https-certificate-file=${opts.tls.certPath}`,
      `--https-certificate-key-file=${opts.tls.keyPath}`,
    );
  }
  const started = performance.now();
  const child = spawn(join(home, "bin", "kc.sh"), args, {
    detached: true, // own process group: stop() reaches the JVM whatever the script did
    stdio: ["ignore", fd, fd],
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: process.env.HOME ?? home,
      LANG: "C.UTF-8",
      ...(process.env.JAVA_HOME ? { JAVA_HOME: process.env.JAVA_HOME } : {}),
      JAVA_OPTS_APPEND: process.env.KEYCLOAK_JAVA_OPTS_APPEND ?? JAVA_OPTS_APPEND,
      ...opts.env,
    },
  });
  closeSync(fd);
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not spawn ${join(home, "bin", "kc.sh")}`);
  const readLog = () => {
    try {
      return readFileSync(logPath, "utf8");
    } catch {
      return "";
    }
  };
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    try {
      process.kill(-pid, "SIGTERM");
    } catch {
      // already gone
    }
    if (!(await waitExit(child, 30_000))) {
      try {
        process.kill(-pid, "SIGKILL");
      } catch {
        // already gone
      }
      await waitExit(child, 10_000);
    }
  };
  const discovery = `http://127.0.0.1:${port}/realms/master/.well-known/openid-configuration`;
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 300_000);
  try {
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`kc.sh start-dev exited (${child.exitCode ?? child.signalCode}) before it was ready`);
      }
      const res = await fetch(discovery, { signal: AbortSignal.timeout(5000) }).catch(() => undefined);
      if (res !== undefined) {
        await res.arrayBuffer();
        if (res.status === 200) break;
      }
      if (Date.now() > deadline) throw new Error(`Keycloak did not answer ${discovery} in time`);
      await new Promise((r) => setTimeout(r, 250));
    }
  } catch (e) {
    await stop();
    throw new Error(`${(e as Error).message}\n--- keycloak.log (tail) ---\n${readLog().slice(-4000)}`, {
      cause: e,
    });
  }
  return {
    child,
    pid,
    port,
    tlsPort,
    startMs: performance.now() - started,
    startCpuMs: cpuMs(pid),
    log: readLog,
    stop,
  };
}

/**
 * Starts a fresh Keycloak (prepared on first use): its own temp home and database, HTTP and HTTPS
 * on free 127.0.0.1 ports. `stop()` ends it by PID (its process group) and removes the temp home.
 */
export async function startKeycloak(): Promise<Keycloak> {
  const prep = await prepareKeycloak();
  const home = await mkdtemp(join(tmpdir(), "ncl-keycloak-"));
  try {
    await mkdir(join(home, "bin"));
    await copyFile(join(prep.dist, "bin", "kc.sh"), join(home, "bin", "kc.sh"));
    await chmod(join(home, "bin", "kc.sh"), 0o755);
    for (const d of ["lib", "themes", "providers"]) await symlink(join(prep.dist, d), join(home, d));
    await cp(join(prep.dist, "conf"), join(home, "conf"), { recursive: true });
    await cp(prep.templateH2, join(home, "data", "h2"), { recursive: true });
    const tls = await makeTlsCertificate(home);
    const s = await startIn(home, { tls });
    if (/Updating the configuration/.test(s.log())) {
      log("warning: this start rebuilt the server (the options differ from the prepared build)");
    }
    return {
      version: prep.version,
      httpBase: `http://127.0.0.1:${s.port}`,
      httpsBase: `https://127.0.0.1:${s.tlsPort}`,
      port: s.port,
      tlsPort: s.tlsPort,
      caCertPath: tls.certPath,
      pid: s.pid,
      startMs: s.startMs,
      startCpuMs: s.startCpuMs,
      admin: prep.admin,
      log: s.log,
      async stop() {
        await s.stop();
        await rm(home, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
      },
    };
  } catch (e) {
    await rm(home, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
    throw e;
  }
}

/** The admin REST API as the bootstrap admin (tokens from the master realm's admin-cli client). */
export class KeycloakAdmin {
  private token: { value: string; until: number } | undefined;
  constructor(private readonly kc: Pick<Keycloak, "httpBase" | "admin" | "log">) {}

  private async accessToken(): Promise<string> {
    if (this.token !== undefined && Date.now() < this.token.until) return this.token.value;
    const res = await fetch(`${this.kc.httpBase}/realms/master/protocol/openid-connect/token`, {
      method: "POST",
      body: new URLSearchParams({
        grant_type: "password",
        client_id: "admin-cli",
        username: this.kc.admin.username,
        password: this.kc.admin.password,
      }),
    });
    const body = (await res.json()) as { access_token?: string; expires_in?: number };
    if (res.status !== 200 || body.access_token === undefined) {
      throw new Error(`admin sign-in failed: ${res.status} ${JSON.stringify(body)}`);
    }
    this.token = { value: body.access_token, until: Date.now() + ((body.expires_in ?? 60) - 10) * 1000 };
    return body.access_token;
  }

  /**
   * `METHOD /admin/realms{path}`; returns the JSON answer, or the new object's id for a 201. A
   * FormData body is sent as multipart (the console's file uploads), anything else as JSON.
   */
  async call(method: string, path: string, body?: unknown): Promise<unknown> {
    const started = performance.now();
    const form = body instanceof FormData;
    const res = await fetch(`${this.kc.httpBase}/admin/realms${path}`, {
      method,
      headers: {
        authorization: `Bearer ${await this.accessToken()}`,
        ...(body === undefined || form ? {} : { "content-type": "application/json" }),
      },
      body: body === undefined ? undefined : form ? body : JSON.stringify(body),
    });
    const text = await res.text();
    if (process.env.KEYCLOAK_DEBUG) {
      log(`${method} /admin/realms${path}: ${res.status} in ${Math.round(performance.now() - started)} ms`);
    }
    if (res.status >= 300) {
      const errors = this.kc
        .log()
        .split("\n")
        .filter((l) => /\b(ERROR|WARN)\b/.test(l))
        .slice(-5);
      throw new Error(`${method} /admin/realms${path}: ${res.status} ${text}\n${errors.join("\n")}`);
    }
    if (res.status === 201) return res.headers.get("location")?.split("/").pop();
    return text === "" ? undefined : (JSON.parse(text) as unknown);
  }
}
