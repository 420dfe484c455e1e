// A second OpenID Provider that is not Keycloak-shaped: Glewlwyd 2.7 (Debian 12's `glewlwyd`, a C
// server with its own OIDC plugin), on 127.0.0.1 with a SQLite database in a temp dir. It is the
// kind of provider issue 14 was found with: it does NOT form-decode HTTP Basic client credentials
// (RFC 6749 2.3.1 asks servers to) and answers a client it does not recognise with HTTP 403 and an
// empty body.
//
// Set up the way its documentation says (docs/GETTING_STARTED.md, docs/OIDC.md): the packaged
// schema and admin user, then the admin API (sign in as `admin`, POST /api/mod/plugin/ for the OIDC
// plugin, POST /api/scope/ and /api/client/ for the clients).

import { spawn, type ChildProcess } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./ports.ts";

const GLEWLWYD_BIN = "/usr/bin/glewlwyd";
const SCHEMA = "/usr/share/dbconfig-common/data/glewlwyd/install/sqlite3";
const MODULES = "/usr/lib/glewlwyd";
// The packaged schema creates `admin` with this password (Glewlwyd's documented default).
const ADMIN_PASSWORD = "password";
const PLUGIN = "oidc";
export const GLEWLWYD_SCOPE = "nix-cache";

export function requireGlewlwyd(): void {
  if (!existsSync(GLEWLWYD_BIN) || !existsSync(SCHEMA)) {
    throw new Error(
      "Glewlwyd is not installed: run `apt-get install -y --no-install-recommends glewlwyd sqlite3` (scripts/ensure-debs.sh glewlwyd sqlite3)",
    );
  }
  if (!existsSync("/usr/bin/sqlite3")) {
    throw new Error("sqlite3 is not installed: run `apt-get install -y --no-install-recommends sqlite3`");
  }
}

export interface GlewlwydClient {
  clientId: string;
  /** For client_secret_basic / client_secret_post. */
  secret?: string;
  /** PEM public key, for private_key_jwt. */
  publicKeyPem?: string;
  /** What the client may use at the token endpoint (Glewlwyd checks it per client). */
  authMethods: ("client_secret_basic" | "client_secret_post" | "private_key_jwt")[];
}

export interface Glewlwyd {
  issuer: string;
  port: number;
  /** Adds a confidential client allowed the client credentials grant for GLEWLWYD_SCOPE. */
  addClient(client: GlewlwydClient): Promise<void>;
  /** A fresh key pair for private_key_jwt: the private key as PKCS#8 PEM and the public as SPKI PEM. */
  keyPair(kind?: "rsa" | "ec"): { privatePem: string; publicPem: string };
  log(): Promise<string>;
  stop(): Promise<void>;
}

function run(cmd: string, args: string[], input?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["pipe", "ignore", "pipe"] });
    let err = "";
    child.stderr.setEncoding("utf8").on("data", (d: string) => (err += d));
    child.on("error", reject);
    child.on("close", (code) =>
      code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(" ")} exited ${code}: ${err}`)),
    );
    // A command that exits without reading its input: the exit code tells, not the EPIPE.
    child.stdin.on("error", () => {});
    child.stdin.end(input ?? "");
  });
}

/** A cookie jar of one: the admin session. */
class Admin {
  private cookie = "";
  constructor(private readonly base: string) {}

  async request(method: string, path: string, body?: unknown): Promise<Response> {
    const res = await fetch(`${this.base}/api${path}`, {
      method,
      headers: {
        ...(body === undefined ? {} : { "content-type": "application/json" }),
        ...(this.cookie === "" ? {} : { cookie: this.cookie }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const set = res.headers.getSetCookie();
    if (set.length > 0) this.cookie = set.map((c) => c.split(";")[0]).join("; ");
    return res;
  }

  async ok(method: string, path: string, body?: unknown): Promise<void> {
    const res = await this.request(method, path, body);
    if (!res.ok)
      throw new Error(`Glewlwyd admin API ${method} ${path}: HTTP ${res.status} ${await res.text()}`);
    await res.body?.cancel();
  }
}

export async function startGlewlwyd(): Promise<Glewlwyd> {
  requireGlewlwyd();
  const dir = await mkdtemp(join(tmpdir(), "ncl-glewlwyd-"));
  const db = join(dir, "glewlwyd.db");
  await run("/usr/bin/sqlite3", [db], await readFile(SCHEMA, "utf8"));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const issuer = `${base}/api/${PLUGIN}`;
  const logFile = join(dir, "glewlwyd.log");
  const conf = join(dir, "glewlwyd.conf");
  await writeFile(
    conf,
    `port=${port}
bind_address="127.0.0.1"
external_url="${base}"
login_url="login.html"
url_prefix="api"
allow_origin="*"
log_mode="file"
log_level="INFO"
log_file="${logFile}"
cookie_secure=0
cookie_same_site="empty"
session_expiration=3600
session_key="GLEWLWYD2_SESSION_ID"
admin_session_authentication="cookie"
profile_session_authentication="cookie"
allow_multiple_user_per_session=true
login_api_enabled=true
admin_scope="g_admin"
profile_scope="g_profile"
user_module_path="${MODULES}/user"
client_module_path="${MODULES}/client"
user_auth_scheme_module_path="${MODULES}/scheme"
plugin_module_path="${MODULES}/plugin"
hash_algorithm="SHA512"
database =
{
  type = "sqlite3"
  path = "${db}"
};
`,
  );
  const child: ChildProcess = spawn(GLEWLWYD_BIN, ["-c", conf], {
    stdio: ["ignore", "ignore", "pipe"],
    detached: true,
  });
  let stderr = "";
  child.stderr?.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  let exited = false;
  child.on("exit", () => (exited = true));

  const stop = async () => {
    if (!exited && child.pid !== undefined) {
      const gone = new Promise((r) => child.once("exit", r));
      try {
        process.kill(child.pid, "SIGTERM");
      } catch {
        // already gone
      }
      await gone;
    }
    await rm(dir, { recursive: true, force: true });
  };

  try {
    // Up when its API answers; bounded by attempts, not by time.
    const admin = new Admin(base);
    for (let attempt = 0; ; attempt++) {
      if (exited)
        throw new Error(`glewlwyd exited: ${stderr}${await readFile(logFile, "utf8").catch(() => "")}`);
      try {
        const res = await admin.request("POST", "/auth/", { username: "admin", password: ADMIN_PASSWORD });
        if (res.ok) break;
        throw new Error(`admin sign-in: HTTP ${res.status} ${await res.text()}`);
      } catch (e) {
        if (attempt > 200 || !(e instanceof TypeError)) throw e;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    // The signing key of the provider (RS256).
    const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    await admin.ok("POST", "/scope/", {
      name: GLEWLWYD_SCOPE,
      display_name: "nix cache",
      description: "access to the nix cache",
      password_required: false,
      scheme: {},
    });
    await admin.ok("POST", "/mod/plugin/", {
      module: "oidc",
      name: PLUGIN,
      display_name: "OpenID Connect",
      parameters: {
        iss: issuer,
        "jwt-type": "rsa",
        "jwt-key-size": "256",
        key: privateKey.export({ format: "pem", type: "pkcs8" }),
        cert: publicKey.export({ format: "pem", type: "spki" }),
        "access-token-duration": 300,
        "refresh-token-duration": 3600,
        "code-duration": 600,
        "refresh-token-rolling": true,
        "allow-non-oidc": true,
        "auth-type-code-enabled": true,
        "auth-type-token-enabled": false,
        "auth-type-none-enabled": false,
        "auth-type-id-token-enabled": false,
        "auth-type-password-enabled": false,
        "auth-type-client-enabled": true,
        "auth-type-refresh-enabled": true,
        "auth-type-device-enabled": false,
        "client-pubkey-parameter": "pubkey",
        "pkce-allowed": true,
        "request-parameter-allow": true,
        "allowed-scope": ["openid", GLEWLWYD_SCOPE],
        scope: [],
      },
    });
  } catch (e) {
    await stop();
    throw e;
  }

  const admin = new Admin(base);
  await admin.ok("POST", "/auth/", { username: "admin", password: ADMIN_PASSWORD });
  return {
    issuer,
    port,
    async addClient(c) {
      await admin.ok("POST", "/client/", {
        client_id: c.clientId,
        name: c.clientId,
        description: "",
        confidential: true,
        enabled: true,
        ...(c.secret === undefined ? {} : { password: c.secret, client_secret: c.secret }),
        ...(c.publicKeyPem === undefined ? {} : { pubkey: c.publicKeyPem }),
        redirect_uri: [],
        authorization_type: ["client_credentials"],
        scope: [GLEWLWYD_SCOPE],
        token_endpoint_auth_method: c.authMethods,
      });
    },
    keyPair(kind = "rsa") {
      const pair =
        kind === "rsa"
          ? generateKeyPairSync("rsa", { modulusLength: 2048 })
          : generateKeyPairSync("ec", { namedCurve: "P-256" });
      return {
        privatePem: pair.privateKey.export({ format: "pem", type: "pkcs8" }) as string,
        publicPem: pair.publicKey.export({ format: "pem", type: "spki" }) as string,
      };
    },
    log: () => readFile(logFile, "utf8").catch(() => ""),
    stop,
  };
}
