// Start-up: our code is one file (dist/nix-cache-login.cjs), and the third-party libraries are in
// dist/vendor/, loaded only by the commands that use them: `status`, `--help` and a timer's
// `refresh --min-valid` load neither a library nor the heavy parts of Node (crypto, the network,
// child processes). No compiled-code cache is written anywhere.
import assert from "node:assert/strict";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";

import { after, test } from "node:test";
import { StateStore } from "../../src/store/state.ts";
import { writeState } from "../../src/store/write.ts";
import { CLI, makeWorkspace, runCli, type Workspace } from "../support/cli.ts";

const workspaces: Workspace[] = [];
after(async () => {
  for (const ws of workspaces) await ws.cleanup();
});

const ISSUER = "https://sso.example.org/realms/nix";
const TOKEN = "header.payload-of-a-fresh-access-token.signature";

/** A signed-in user whose access token stays valid for an hour: nothing to renew. */
async function freshWorkspace(): Promise<Workspace> {
  const ws = await makeWorkspace({ issuer: ISSUER, client_id: "nix-cache", cache_host: "cache.example.org" });
  workspaces.push(ws);
  const store = new StateStore(ws.stateDir, ISSUER, "nix-cache");
  await writeState(store, {
    ...store.empty("user"),
    refresh_token: "a-refresh-token-never-sent",
    access_token: TOKEN,
    access_token_expires_at: new Date(Date.now() + 3600_000).toISOString(),
  });
  await mkdir(dirname(ws.netrcPath), { recursive: true });
  await writeFile(ws.netrcPath, `machine cache.example.org login nix-cache-login password ${TOKEN}\n`, {
    mode: 0o600,
  });
  return ws;
}

/**
 * The files of dist/ a run of the CLI loaded (from Node's require cache) and the built-in modules
 * it loaded (process.moduleLoadList), written at exit.
 */
async function loadedFiles(
  ws: Workspace,
  args: string[],
): Promise<{ code: number | null; files: string[]; builtins: string[] }> {
  const hook = join(ws.dir, "hook.cjs");
  const out = join(ws.dir, `loaded-${args.join("_")}.json`);
  await writeFile(
    hook,
    `process.on("exit", () => require("node:fs").writeFileSync(${JSON.stringify(out)}, JSON.stringify([Object.keys(require.cache), process.moduleLoadList])));\n`,
  );
  const r = await runCli(ws, args, { env: { NODE_OPTIONS: `--require ${hook}` } });
  const dist = join(CLI, "..");
  const [cache, builtins] = JSON.parse(await readFile(out, "utf8")) as [string[], string[]];
  const files = cache
    .filter((f) => f.startsWith(`${dist}/`))
    .map((f) => f.slice(dist.length + 1))
    .sort();
  return { code: r.code, files, builtins };
}

/** Each of these costs more start-up time than all of `status`. */
const HEAVY = ["crypto", "net", "http", "https", "child_process", "tls", "zlib"];

test("status, --help and refresh --min-valid load one file and no heavy built-in: no third-party library, no crypto, no network", async () => {
  const ws = await freshWorkspace();
  for (const args of [["status"], ["--help"], ["status", "--json"], ["refresh", "--min-valid", "10m"]]) {
    const { code, files, builtins } = await loadedFiles(ws, args);
    assert.equal(code, 0, args.join(" "));
    assert.deepEqual(files, ["nix-cache-login.cjs"], args.join(" "));
    assert.deepEqual(
      builtins.filter((m) => HEAVY.some((h) => m === `NativeModule ${h}`)),
      [],
      args.join(" "),
    );
  }
});

test("the commands that need more load the library from dist/vendor/, and only that", async () => {
  const ws = await freshWorkspace();
  // logout revokes the refresh token first (openid-client); nothing listens on port 9 of
  // 127.0.0.1, so that fails at once and the local clean-up goes on (exit 1).
  await ws.writeConfig({
    issuer: "http://127.0.0.1:9/realms/nix",
    client_id: "nix-cache",
    cache_host: "cache.example.org",
  });
  const store = new StateStore(ws.stateDir, "http://127.0.0.1:9/realms/nix", "nix-cache");
  await writeState(store, { ...store.empty("user"), refresh_token: "a-refresh-token", access_token: TOKEN });
  const { code, files } = await loadedFiles(ws, ["logout"]);
  assert.equal(code, 1);
  assert.deepEqual(files, ["nix-cache-login.cjs", "vendor/openid-client.cjs"]);
});

test("one copy of our code: one error class, no code cache", async () => {
  const dist = join(CLI, "..");
  const all = (await readdir(dist, { recursive: true })).filter((f) => f.endsWith(".cjs"));
  const texts = await Promise.all(all.map(async (f) => [f, await readFile(join(dist, f), "utf8")] as const));
  const withErrorClass = texts.filter(([, t]) => t.includes('"CliError"')).map(([f]) => f);
  assert.deepEqual(withErrorClass, ["nix-cache-login.cjs"]);
  assert.equal((texts.find(([f]) => f === "nix-cache-login.cjs")?.[1] ?? "").split('"CliError"').length, 2);
  assert.deepEqual(
    texts.filter(([, t]) => /cachedData|enableCompileCache/.test(t)).map(([f]) => f),
    [],
  );
});

test("no compiled-code cache is written", async () => {
  const ws = await freshWorkspace();
  assert.equal((await runCli(ws, ["--help"])).code, 0);
  assert.equal((await runCli(ws, ["status"])).code, 0);
  await assert.rejects(readdir(ws.env.XDG_CACHE_HOME as string), { code: "ENOENT" });
  const everything = await readdir(ws.dir, { recursive: true });
  assert.deepEqual(
    everything.filter((f) => /code-cache|compile-cache/.test(f)),
    [],
  );
});
