/**
 * `npm run bench`: whole processes, timed by hyperfine, reported as ratios to `node -e 0` measured
 * in the same run. Peak RSS from GNU time. The identity provider runs in this process on 127.0.0.1.
 */
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { existsSync } from "node:fs";
import { StateStore } from "../src/store/state.ts";
import { writeState } from "../src/store/write.ts";
import { benchNix } from "./bench-nix.ts";
import { makeWorkspace } from "../test/support/cli.ts";
import { startRealm } from "../test/support/realm.ts";

const CLI = fileURLToPath(new URL("../dist/nix-cache-login.cjs", import.meta.url));
const STARTUP_RUNS = 120;
/** Short rounds: this is as close to interleaving the commands as hyperfine gets. */
const STARTUP_ROUNDS = 20;

function exec(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  // Async on purpose: the realm answers from this process's event loop while the command runs.
  return new Promise((resolve) => {
    const c = spawn(cmd, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    c.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    c.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    c.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

interface Timing {
  name: string;
  mean: number;
  stddev: number;
  median: number;
}

/**
 * hyperfine runs one command's batch after the other, so a machine that speeds up or slows down
 * meanwhile skews the ratios. The batches are therefore split into rounds (every command in each),
 * and the times of all rounds are pooled.
 */
async function hyperfine(
  env: NodeJS.ProcessEnv,
  runs: number,
  commands: Record<string, string>,
  rounds = 1,
): Promise<Timing[]> {
  const dir = await mkdtemp(join(tmpdir(), "ncl-bench-"));
  const out = join(dir, "h.json");
  const times = new Map<string, number[]>(Object.keys(commands).map((name) => [name, []]));
  const perRound = Math.ceil(runs / rounds);
  for (let round = 0; round < rounds; round++) {
    const warmup = round === 0 ? "3" : "1";
    const args = ["-N", "-i", "--style", "none", "-w", warmup, "-r", String(perRound), "--export-json", out];
    for (const [name, cmd] of Object.entries(commands)) args.push("-n", name, cmd);
    const r = await exec("hyperfine", args, env);
    if (r.code !== 0) throw new Error(`hyperfine failed: ${r.stderr}`);
    const json = JSON.parse(await readFile(out, "utf8")) as {
      results: { command: string; times: number[] }[];
    };
    for (const x of json.results) times.get(x.command)?.push(...x.times.map((t) => t * 1000));
  }
  await rm(dir, { recursive: true, force: true });
  return [...times].map(([name, xs]) => {
    const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
    const stddev = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1));
    return { name, mean, stddev, median: median(xs) };
  });
}

/** Peak RSS of `node ...args` in KiB, as GNU time reports it. */
async function peakRssKiB(env: NodeJS.ProcessEnv, args: string[]): Promise<number> {
  const r = await exec("/usr/bin/time", ["-f", "%M", process.execPath, ...args], env);
  const last = r.stderr.trim().split("\n").pop() ?? "";
  return Number(last);
}

const ms = (x: number) => `${x.toFixed(1)} ms`;

/** A timing against the baseline: mean ± stddev and median, and both ratios. */
function row(t: Timing, base: Timing): string {
  return `  ${t.name.padEnd(54)} ${ms(t.mean).padStart(9)} ± ${ms(t.stddev).padEnd(8)} median ${ms(t.median).padStart(9)}   ratio ${(t.mean / base.mean).toFixed(2)} (median ${(t.median / base.median).toFixed(2)})`;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/**
 * Whole browser logins: the CLI opens headless Debian Chromium through the test driver, which
 * signs in on the realm's page. --verbose timing lines give the callback -> netrc time and the
 * token request's own time.
 */
async function benchLogin(
  env: NodeJS.ProcessEnv,
  runs: number,
): Promise<{ wall: number[]; callbackToNetrc: number[]; tokenResponse: number[] }> {
  const driver = fileURLToPath(new URL("../test/support/browser-driver.ts", import.meta.url));
  const tsx = fileURLToPath(import.meta.resolve("tsx"));
  const browserCommand = `'${process.execPath}' --import '${tsx}' '${driver}'`;
  const out = { wall: [] as number[], callbackToNetrc: [] as number[], tokenResponse: [] as number[] };
  for (let i = 0; i < runs; i++) {
    const started = performance.now();
    const r = await exec(
      process.execPath,
      [CLI, "login", "--verbose", "--browser-command", browserCommand],
      env,
    );
    const wall = performance.now() - started;
    if (r.code !== 0) throw new Error(`login failed: ${r.stderr}`);
    const cb = /callback_to_netrc_ms=([\d.]+)/.exec(r.stderr)?.[1];
    const token = /POST \S+\/token -> 200 \((\d+) ms\)/.exec(r.stderr)?.[1];
    if (cb === undefined || token === undefined) throw new Error("login printed no timing lines");
    out.wall.push(wall);
    out.callbackToNetrc.push(Number(cb));
    out.tokenResponse.push(Number(token));
  }
  return out;
}

async function main(): Promise<void> {
  const realm = await startRealm({ accessTokenTTL: 3600, refreshTokenTTL: 86400, tls: false });
  const ws = await makeWorkspace({ issuer: realm.issuer, client_id: "nix-cache", cache_host: "127.0.0.1" });
  const { dir, env } = ws;
  try {
    const secretFile = join(dir, "secret");
    await writeFile(secretFile, realm.serviceClientSecret, { mode: 0o600 });
    const saConfig = join(dir, "sa.toml");
    await writeFile(
      saConfig,
      `issuer = "${realm.issuer}"\nclient_id = "nix-cache-server"\ncache_host = "127.0.0.1"\nclient_secret_file = "${secretFile}"\nnetrc_path = "${join(dir, "sa-netrc")}"\n`,
    );
    const tokens = await realm.signIn();
    const store = new StateStore(ws.stateDir, realm.issuer, "nix-cache");
    await writeState(store, { ...store.empty("user"), refresh_token: tokens.refresh_token as string });
    const first = await exec(process.execPath, [CLI, "refresh"], env);
    if (first.code !== 0) throw new Error(`refresh failed: ${first.stderr}`);

    const node = process.execPath;
    // hyperfine's warm-up runs leave each command's code cache behind, as a user's first run does.
    const startupCommands = {
      "node -e 0": `${node} -e 0`,
      "nix-cache-login --help": `${node} ${CLI} --help`,
      "nix-cache-login status": `${node} ${CLI} status`,
      "nix-cache-login refresh --min-valid 10m (no request)": `${node} ${CLI} refresh --min-valid 10m`,
    };
    const startup = await hyperfine(env, STARTUP_RUNS, startupCommands);
    const uncached = await hyperfine(
      { ...env, NODE_DISABLE_COMPILE_CACHE: "1" },
      STARTUP_RUNS,
      startupCommands,
    );
    realm.clearRequests();
    const network = await hyperfine(env, 20, {
      "node -e 0": `${node} -e 0`,
      "nix-cache-login refresh": `${node} ${CLI} refresh`,
      "nix-cache-login service-account": `${node} ${CLI} service-account --config ${saConfig}`,
    });
    const refreshRuns = 20 + 3;
    const tokenRequests = realm.countRequests("/token");
    const refreshRequests = realm.requests.length;

    realm.clearRequests();
    await exec(process.execPath, [CLI, "refresh"], env);
    const perRefresh = realm.requests.map((q) => `${q.method} ${q.path}`);

    const rss = {
      "node -e 0": await peakRssKiB(env, ["-e", "0"]),
      status: await peakRssKiB(env, [CLI, "status"]),
      refresh: await peakRssKiB(env, [CLI, "refresh"]),
      "service-account": await peakRssKiB(env, [CLI, "service-account", "--config", saConfig]),
    };

    // Big netrc files: status (parse) and service-account (parse, upsert, write) at each size.
    const sizes = [10, 1000, 10000];
    const netrcCommands: Record<string, string> = { "node -e 0": `${node} -e 0` };
    for (const n of sizes) {
      const lines = Array.from(
        { length: n },
        (_, i) => `machine host${i}.example.org login user${i} password ${"p".repeat(64)}${i}\n`,
      );
      for (const kind of ["status", "sa"]) {
        const netrc = join(dir, `${kind}-${n}.netrc`);
        await writeFile(netrc, lines.join(""), { mode: 0o600 });
        const config = join(dir, `${kind}-${n}.toml`);
        await writeFile(
          config,
          kind === "status"
            ? `issuer = "${realm.issuer}"\nclient_id = "nix-cache"\ncache_host = "127.0.0.1"\nnetrc_path = "${netrc}"\n`
            : `issuer = "${realm.issuer}"\nclient_id = "nix-cache-server"\ncache_host = "127.0.0.1"\nclient_secret_file = "${secretFile}"\nnetrc_path = "${netrc}"\n`,
        );
        netrcCommands[
          kind === "status" ? `status, ${n} netrc entries` : `service-account (upsert), ${n} entries`
        ] =
          kind === "status"
            ? `${node} ${CLI} status --config ${config}`
            : `${node} ${CLI} service-account --config ${config}`;
      }
    }
    const netrcSizes = await hyperfine(env, 10, netrcCommands);

    const base = startup[0] as Timing;
    const baseN = network[0] as Timing;
    console.log(`nix-cache-login benchmark (node ${process.version}, ${new Date().toISOString()})\n`);
    console.log(
      `Start-up, wall time (hyperfine, ${STARTUP_RUNS} runs in ${STARTUP_ROUNDS} rounds; ratio to node -e 0 in the same rounds; target <= 1.15):`,
    );
    for (const t of startup) {
      console.log(row(t, base));
    }
    console.log("\nThe same without the code cache (NODE_DISABLE_COMPILE_CACHE=1), as on a first run:");
    const baseU = uncached[0] as Timing;
    for (const t of uncached) {
      console.log(row(t, baseU));
    }
    console.log("\nAgainst the local realm on 127.0.0.1 (hyperfine, 20 runs):");
    for (const t of network) {
      console.log(row(t, baseN));
    }
    console.log(
      `\nHTTP requests per refresh with a cached discovery document: ${perRefresh.length} (${perRefresh.join(", ")})`,
    );
    console.log(
      `  (all refresh + service-account runs above: ${refreshRequests} requests, ${tokenRequests} to the token endpoint, for ${refreshRuns * 2} runs)`,
    );
    console.log("\nNetrc size (hyperfine, 10 runs; each netrc line is ~100 bytes):");
    for (const t of netrcSizes) console.log(row(t, netrcSizes[0] as Timing));
    console.log("\nPeak RSS (GNU time, KiB):");
    for (const [k, v] of Object.entries(rss)) console.log(`  ${k.padEnd(20)} ${v}`);

    if (existsSync("/usr/bin/chromium")) {
      const runs = 5;
      const l = await benchLogin(env, runs);
      const overhead = l.callbackToNetrc.map((c, i) => c - (l.tokenResponse[i] as number));
      console.log(`\nBrowser login through headless Chromium (${runs} runs, medians):`);
      console.log(`  whole login, CLI start to exit (incl. starting Chromium)  ${ms(median(l.wall))}`);
      console.log(
        `  callback reaching the loopback server -> netrc written     ${ms(median(l.callbackToNetrc))}`,
      );
      console.log(
        `  of which the provider's token response                     ${ms(median(l.tokenResponse))}`,
      );
      console.log(
        `  our overhead above the token response (target <= 50 ms)    ${ms(median(overhead))} (max ${ms(Math.max(...overhead))})`,
      );
    } else {
      console.log("\nBrowser login: skipped (apt-get install -y --no-install-recommends chromium)");
    }
  } finally {
    await realm.stop();
    await ws.cleanup();
  }
  if (["/usr/bin/nix-store", "/usr/sbin/apache2"].every(existsSync)) {
    const n = await benchNix(15);
    console.log(`\nNix substituting a small path (nix-store -r, ${n.runs} runs each, medians):`);
    console.log(`  through the protected cache with the tool's netrc   ${ms(n.protectedMs)}`);
    console.log(`  from an unprotected copy of the same cache          ${ms(n.unprotectedMs)}`);
    console.log(
      `  auth overhead                                       ${ms(n.protectedMs - n.unprotectedMs)} (ratio ${(n.protectedMs / n.unprotectedMs).toFixed(2)})`,
    );
  } else {
    console.log(
      "\nNix through the protected cache: skipped (apt-get install -y --no-install-recommends nix-bin apache2 libapache2-mod-auth-openidc)",
    );
  }
}

main().catch((e: unknown) => {
  console.error(`bench failed: ${e instanceof Error ? e.message : String(e)}`);
  process.exitCode = 1;
});
