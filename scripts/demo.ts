/**
 * `npm run demo`: the main job end to end on this machine, with no external service. Starts the
 * embedded Keycloak-shaped identity provider on 127.0.0.1, writes a temporary configuration, runs
 * the real CLI, shows the netrc it wrote (token redacted), and shuts everything down.
 */
import { spawn } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { appendFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { startProtectedCache, type ProtectedCache } from "../test/support/cache.ts";
import { makeWorkspace } from "../test/support/cli.ts";
import { makeBinaryCache, makeNixEnv, nixStoreRealise, readStoreFile } from "../test/support/nix.ts";
import { startRealm, type Realm } from "../test/support/realm.ts";

const CLI = fileURLToPath(new URL("../dist/nix-cache-login.cjs", import.meta.url));
const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);

function redact(netrc: string): string {
  return netrc.replace(
    /(password\s+)(\S+)/g,
    (_m, p: string, t: string) => `${p}${t.slice(0, 10)}...[${t.length} bytes, redacted]`,
  );
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(env: NodeJS.ProcessEnv, args: string[], onStderr?: (chunk: string) => void): Promise<Run> {
  console.log(bold(`\n$ nix-cache-login ${args.join(" ")}`));
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      stdout += d;
      process.stdout.write(d);
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
      process.stdout.write(d);
      onStderr?.(d);
    });
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

function expect(run: Run, code: number, what: string): void {
  if (run.code !== code) throw new Error(`${what}: exit ${run.code}, expected ${code}`);
}

async function main(): Promise<void> {
  const ws = await makeWorkspace();
  const { dir, home, env } = ws;
  let realm: Realm | undefined;
  let cache: ProtectedCache | undefined;
  // With Nix and Apache + mod_auth_openidc installed, the demo goes all the way to a Nix download.
  const withNix = [
    "/usr/bin/nix-store",
    "/usr/sbin/apache2",
    "/usr/lib/apache2/modules/mod_auth_openidc.so",
  ].every(existsSync);
  try {
    realm = await startRealm({ accessTokenTTL: 3600, refreshTokenTTL: 86400, tls: withNix });
    console.log(bold(`Identity provider (Keycloak-shaped realm) on ${realm.issuer}`));

    // A server: client credentials with the secret in a file.
    const secretFile = join(dir, "client-secret");
    await writeFile(secretFile, `${realm.serviceClientSecret}\n`, { mode: 0o600 });
    const serverConfig = join(dir, "server.toml");
    await writeFile(
      serverConfig,
      [
        `issuer = "${realm.issuer}"`,
        `client_id = "${realm.serviceClientId}"`,
        `cache_host = "127.0.0.1"`,
        `client_secret_file = "${secretFile}"`,
        `netrc_path = "$HOME/server-netrc"`,
        "",
      ].join("\n"),
    );
    console.log(bold(`\nServer configuration (${serverConfig}):`));
    console.log((await readFile(serverConfig, "utf8")).trimEnd());
    expect(await cli(env, ["service-account", "--config", serverConfig]), 0, "service-account");
    expect(await cli(env, ["status", "--config", serverConfig]), 0, "status");
    console.log(bold(`\nThe netrc Nix reads (${join(home, "server-netrc")}):`));
    console.log(redact(await readFile(join(home, "server-netrc"), "utf8")).trimEnd());

    if (!withNix) {
      console.log(
        bold(
          "\n(Nix part skipped: install nix-bin, apache2 and libapache2-mod-auth-openidc to see Nix fetch through the protected cache.)",
        ),
      );
    } else {
      const nix = await makeNixEnv(join(dir, "nix"));
      const paths = await makeBinaryCache(nix, join(dir, "cache"), {
        "hello.txt": "hello from the protected cache\n",
      });
      const path = Object.values(paths)[0] as string;
      cache = await startProtectedCache({
        cacheDir: join(dir, "cache"),
        issuer: realm.issuer,
        jwksUri: realm.jwksUriTls as string,
        caBundle: realm.caCertPath as string,
        audience: realm.audience,
      });
      console.log(
        bold(`\nA binary cache protected by Apache + mod_auth_openidc on ${cache.url}, holding ${path}`),
      );
      // Point this Nix at the netrc the tool writes, as a user would in nix.conf.
      await appendFile(join(nix.confDir, "nix.conf"), `netrc-file = ${join(home, "server-netrc")}\n`);
      await appendFile(serverConfig, `cache_url = "${cache.url}"\n`);
      const without = await nixStoreRealise(nix, path, { substituter: cache.url });
      console.log(bold(`\n$ nix-store -r ${path} --option substituters ${cache.url}   # without a token`));
      console.log(`exit ${without.code}: ${without.stderr.trim().split("\n").pop() ?? ""}`);
      const fetched = await nixStoreRealise(nix, path, {
        substituter: cache.url,
        netrcFile: join(home, "server-netrc"),
      });
      console.log(
        bold(
          `\n$ nix-store -r ${path} --option substituters ${cache.url} --option netrc-file ~/server-netrc`,
        ),
      );
      if (fetched.code !== 0) throw new Error(`nix-store -r failed: ${fetched.stderr}`);
      console.log(`exit 0: ${fetched.stdout.trim()} contains: ${(await readStoreFile(nix, path)).trim()}`);
      expect(
        await cli({ ...env, NIX_CONF_DIR: nix.confDir }, ["doctor", "--config", serverConfig]),
        0,
        "doctor",
      );
    }

    // A workstation: the user signs in (device flow, approved here by the demo) and refreshes.
    const userConfig = ws.configPath;
    await ws.writeConfig(
      [
        `issuer = "${realm.issuer}"`,
        `client_id = "${realm.publicClientId}"`,
        `cache_host = "127.0.0.1"`,
        "",
      ].join("\n"),
    );
    console.log(bold(`\nWorkstation configuration (${userConfig}):`));
    console.log((await readFile(userConfig, "utf8")).trimEnd());
    let approved = false;
    const r = realm;
    const login = await cli(env, ["login", "--device"], (chunk) => {
      const code = /code:?\s+([A-Z0-9]{4}-?[A-Z0-9]{4})/i.exec(chunk)?.[1];
      if (code !== undefined && !approved) {
        approved = true;
        console.log(bold(`(the demo approves code ${code} as user alice, as you would in a browser)`));
        void r.approveDevice(code);
      }
    });
    expect(login, 0, "login --device");
    expect(await cli(env, ["refresh"]), 0, "refresh");
    expect(await cli(env, ["status"]), 0, "status");
    console.log(bold(`\nThe netrc Nix reads (${ws.netrcPath}):`));
    console.log(redact(await readFile(ws.netrcPath, "utf8")).trimEnd());
    expect(await cli(env, ["logout"]), 0, "logout");
    expect(await cli(env, ["status"]), 3, "status after logout");
    console.log(bold("\nDemo finished: everything ran against the local identity provider on 127.0.0.1."));
  } finally {
    await cache?.stop();
    await realm?.stop();
    await ws.cleanup();
  }
}

main().catch((e: unknown) => {
  console.error(`demo failed: ${e instanceof Error ? e.message : String(e)}`);
  process.exitCode = 1;
});
