/**
 * `npm run bench`: whole processes, reported as ratios to `node -e 0` measured in the same run.
 * The commands are interleaved (one run of each in turn, over and over), so that a machine that
 * speeds up or slows down meanwhile (it is shared) weighs on all of them alike. Wall time from
 * spawn to exit; peak RSS from GNU time. The identity provider runs in this process on 127.0.0.1.
 *
 *   npm run bench                          the Node that runs npm, and the Node 22 of test/runtimes
 *                                          when installed (`npm test` installs it)
 *   npm run bench -- --node PATH ...       that and other Nodes instead of test/runtimes' 22
 *   npm run bench -- --quick               start-up and the local realm only (no browser, no Nix)
 *   npm run bench -- --profile DIR         also --cpu-prof and --heap-prof of refresh and
 *                                          service-account into DIR
 *   npm run bench -- --check               exit 1 when a guard (GUARD below) is broken
 *
 * The guards (issue 25) are regression guards, not races: a change that costs start-up, a renewal
 * or memory shows up as a broken guard. Not run by CI: timings on shared machines are noise.
 */
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { StateStore } from "../src/store/state.ts";
import { writeState } from "../src/store/write.ts";
import { benchNix } from "./bench-nix.ts";
import {
  cpuTimes,
  exec,
  interleaved,
  median,
  peakRss,
  timeAndRss,
  type Command,
  type Timing,
} from "./bench-measure.ts";
import { makeWorkspace } from "../test/support/cli.ts";
import { startRealm } from "../test/support/realm.ts";

const CLI = fileURLToPath(new URL("../dist/nix-cache-login.cjs", import.meta.url));
const STARTUP_RUNS = 60;
const NETWORK_RUNS = 30;
const RSS_RUNS = 10;
const CPU_RUNS = 20;
/**
 * The guards, ratios of medians in the same run (issue 25). They catch a regression; they are not
 * targets. Each sits a few milliseconds above what the one-bundle build measures on a quiet
 * machine on Node 20, the slower of the two (docs/architecture.md#start-up has the figures).
 */
const GUARD = {
  /** --help, status, refresh --min-valid (fresh): wall time over `node -e 0`'s. */
  startupWall: 1.6,
  /** refresh and service-account against the local realm: wall time over the renewal floor's. */
  renewalWall: 2.2,
  /** Every command: peak RSS over `node -e 0`'s. */
  rss: 1.5,
  /** status on a netrc of BIG_NETRC entries: wall seconds and peak MiB. */
  bigNetrcSeconds: 1,
  bigNetrcMiB: 100,
};
const BIG_NETRC = 100_000;

const { values: opts } = parseArgs({
  options: {
    node: { type: "string", multiple: true, default: [] },
    quick: { type: "boolean", default: false },
    check: { type: "boolean", default: false },
    profile: { type: "string" },
  },
});

function printCpu(cpu: Map<string, number>): void {
  const base = [...cpu.values()][0] as number;
  for (const [k, v] of cpu)
    console.log(`  ${k.padEnd(46)} ${ms(v).padStart(9)}  ratio ${(v / base).toFixed(3)}`);
}

const ms = (x: number) => `${x.toFixed(1)} ms`;

/** A timing against the baseline: median, mean ± stddev, and the ratios to the baseline. */
function row(t: Timing, base: Timing, target?: number): string {
  const ratio = t.median / base.median;
  const verdict = target === undefined || t === base ? "" : ratio <= target ? "  ok" : `  ABOVE ${target}`;
  return `  ${t.name.padEnd(46)} median ${ms(t.median).padStart(9)}  mean ${ms(t.mean).padStart(9)} ± ${ms(t.stddev).padEnd(8)} ratio ${ratio.toFixed(3)} (paired ${t.pairedRatio.toFixed(3)})${verdict}`;
}

/** Every guard measured, for the summary and --check. */
const guards: { what: string; ok: boolean; figure: string }[] = [];

function guard(what: string, value: number, limit: number, show = (x: number) => x.toFixed(3)): string {
  const ok = value <= limit;
  guards.push({ what, ok, figure: `${show(value)} (guard <= ${show(limit)})` });
  return ok ? "  ok" : `  BROKEN (guard <= ${show(limit)})`;
}

async function nodeVersion(node: string): Promise<string> {
  return (await exec(node, ["--version"], process.env)).stdout.trim();
}

/**
 * Whole browser logins: the CLI opens headless Debian Chromium through the test driver, which
 * signs in on the realm's page. The --verbose line of the token request gives its own time.
 */
async function benchLogin(
  env: NodeJS.ProcessEnv,
  runs: number,
): Promise<{ wall: number[]; tokenResponse: number[] }> {
  const driver = fileURLToPath(new URL("../test/support/browser-driver.ts", import.meta.url));
  const tsx = fileURLToPath(import.meta.resolve("tsx"));
  const browserCommand = `'${process.execPath}' --import '${tsx}' '${driver}'`;
  const out = { wall: [] as number[], tokenResponse: [] as number[] };
  for (let i = 0; i < runs; i++) {
    const started = performance.now();
    const r = await exec(
      process.execPath,
      [CLI, "login", "--verbose", "--browser-command", browserCommand],
      env,
    );
    const wall = performance.now() - started;
    if (r.code !== 0) throw new Error(`login failed: ${r.stderr}`);
    const token = /POST \S+\/token -> 200 \((\d+) ms\)/.exec(r.stderr)?.[1];
    if (token === undefined) throw new Error("login --verbose printed no token request");
    out.wall.push(wall);
    out.tokenResponse.push(Number(token));
  }
  return out;
}

/**
 * Where a --cpu-prof profile's time went, largest first. Each sample goes to the first of: a Node
 * library on its stack that costs start-up time (undici, crypto, http, assert), the outermost
 * third-party library (so that its module loading counts as its own), our bundle, or what V8
 * reports ((idle) is waiting: the network, fsync, timers).
 */
async function summariseCpuProfile(file: string): Promise<[string, number][]> {
  const { readFile } = await import("node:fs/promises");
  const p = JSON.parse(await readFile(file, "utf8")) as {
    nodes: { id: number; callFrame: { url: string; functionName: string }; children?: number[] }[];
    samples: number[];
    timeDeltas: number[];
  };
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const vendor = (url: string): string | undefined => {
    const name = /\/dist\/vendor\/([^/]+)\.cjs$/.exec(url)?.[1];
    return name === undefined ? undefined : `library: ${name}`;
  };
  /** Node's own libraries that a library or we load: counted apart, wherever they are called from. */
  const builtin = (url: string): string | undefined => {
    if (url.startsWith("node:internal/deps/undici")) return "Node's undici (Headers/Response)";
    if (url === "node:crypto" || url.startsWith("node:internal/crypto")) return "node:crypto";
    if (url === "node:http" || url === "node:https" || url.startsWith("node:_http")) return "node:http(s)";
    if (url === "node:assert" || url.startsWith("node:internal/assert")) return "node:assert";
    return undefined;
  };
  const category = (leaf: number): string => {
    const stack: { url: string; functionName: string }[] = [];
    for (let id: number | undefined = leaf; id !== undefined; id = parent.get(id)) {
      const n = byId.get(id);
      if (n !== undefined) stack.unshift(n.callFrame);
    }
    for (const f of stack) {
      const lib = builtin(f.url);
      if (lib !== undefined) return lib;
    }
    for (const f of stack) {
      const lib = vendor(f.url);
      if (lib !== undefined) return lib;
    }
    if (stack.some((f) => f.url.endsWith("/dist/nix-cache-login.cjs")))
      return "our bundle (and built-ins it calls)";
    const top = stack[stack.length - 1];
    if (top !== undefined && top.url === "" && /^\(.*\)$/.test(top.functionName)) return top.functionName;
    return "Node start-up and internals";
  };
  const total = new Map<string, number>();
  p.samples.forEach((id, i) => {
    const k = category(id);
    total.set(k, (total.get(k) ?? 0) + (p.timeDeltas[i] ?? 0) / 1000);
  });
  return [...total].sort((a, b) => b[1] - a[1]);
}

async function profile(dir: string, node: string, runs: Command[]): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const c of runs) {
    const sub = join(dir, c.name.replace(/[^a-z-]+/g, "_"));
    const args = [
      "--cpu-prof",
      "--cpu-prof-dir",
      sub,
      "--cpu-prof-interval",
      "100",
      "--heap-prof",
      "--heap-prof-dir",
      sub,
      ...c.argv.slice(1),
    ];
    const r = await exec(node, args, c.env);
    if (r.code !== 0) throw new Error(`${c.name} exited with ${r.code}: ${r.stderr}`);
    const { readdir } = await import("node:fs/promises");
    const cpu = (await readdir(sub)).find((f) => f.endsWith(".cpuprofile"));
    if (cpu === undefined) continue;
    const top = await summariseCpuProfile(join(sub, cpu));
    const sum = top.reduce((a, [, v]) => a + v, 0);
    console.log(`  ${c.name}: ${ms(sum)} sampled (profiles in ${sub})`);
    for (const [k, v] of top)
      console.log(`    ${k.padEnd(40)} ${ms(v).padStart(9)}  ${((100 * v) / sum).toFixed(0).padStart(3)}%`);
  }
}

/** The Node 22 that `npm test` also runs (test/runtimes), measured too when installed. */
const NODE22 = fileURLToPath(new URL("../test/runtimes/node_modules/node22/bin/node", import.meta.url));

/**
 * The floor under `status` and `refresh --min-valid`: a bundle like ours that only reads the
 * configuration, the token state and the netrc (their paths are its arguments), parses the TOML with smol-toml and the state as
 * JSON, and prints a line; no checks, no validation, no messages. Whatever the tool does costs more
 * than this; the start-up target is measured against the same `node -e 0`.
 */
async function buildFloor(dir: string): Promise<string> {
  const { build } = await import("esbuild");
  const out = join(dir, "floor.cjs");
  await build({
    stdin: {
      contents: [
        'import { readFileSync, writeSync } from "node:fs";',
        'import { parse } from "smol-toml";',
        "const [config, state, netrc] = process.argv.slice(2);",
        'const c = parse(readFileSync(config, "utf8"));',
        'const s = JSON.parse(readFileSync(state, "utf8"));',
        'const n = readFileSync(netrc, "utf8");',
        "writeSync(1, `${new URL(c.issuer).host}: ${n.includes(s.access_token)}\\n`);",
      ].join("\n"),
      resolveDir: fileURLToPath(new URL("..", import.meta.url)),
      loader: "js",
    },
    bundle: true,
    platform: "node",
    format: "cjs",
    minify: true,
    outfile: out,
    logLevel: "warning",
  });
  return out;
}

/** A netrc of n one-line entries and a config naming it (a user's, or the service account's). */
async function netrcWorkspace(
  dir: string,
  kind: string,
  n: number,
  issuer: string,
  secretFile: string,
): Promise<string> {
  const netrc = join(dir, `${kind}-${n}.netrc`);
  const lines = Array.from(
    { length: n },
    (_, i) => `machine host${i}.example.org login user${i} password ${"p".repeat(64)}${i}\n`,
  );
  await writeFile(netrc, lines.join(""), { mode: 0o600 });
  const config = join(dir, `${kind}-${n}.toml`);
  await writeFile(
    config,
    kind === "status"
      ? `issuer = "${issuer}"\nclient_id = "nix-cache"\ncache_host = "127.0.0.1"\nnetrc_path = "${netrc}"\n`
      : `issuer = "${issuer}"\nclient_id = "nix-cache-server"\ncache_host = "127.0.0.1"\nclient_secret_file = "${secretFile}"\nnetrc_path = "${netrc}"\n`,
  );
  return config;
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

    console.log(`nix-cache-login benchmark (${new Date().toISOString()})`);
    // The paths are the tool's own (StateStore names the state file), passed in, not derived again.
    const floor = [await buildFloor(dir), ws.configPath, store.file, ws.netrcPath];
    const floorCheck = await exec(process.execPath, floor, env);
    if (!floorCheck.stdout.trim().endsWith(": true")) {
      throw new Error(`the floor did not read the token's files: ${floorCheck.stdout}${floorCheck.stderr}`);
    }
    const nodes = [process.execPath, ...(opts.node ?? [])];
    if (opts.node === undefined || opts.node.length === 0) {
      if (existsSync(NODE22)) nodes.push(NODE22);
      else console.log(`(Node 22 not installed: npm ci --prefix test/runtimes, or --node PATH)`);
    }
    for (const node of nodes) {
      const version = await nodeVersion(node);
      const base: Command = { name: "node -e 0", argv: [node, "-e", "0"], env };
      const startupCommands: Command[] = [
        base,
        { name: "floor: read 3 files, parse the TOML", argv: [node, ...floor], env },
        { name: "nix-cache-login --help", argv: [node, CLI, "--help"], env },
        { name: "nix-cache-login status", argv: [node, CLI, "status"], env },
        {
          name: "nix-cache-login refresh --min-valid 10m",
          argv: [node, CLI, "refresh", "--min-valid", "10m"],
          env,
        },
      ];
      const startup = await interleaved(startupCommands, STARTUP_RUNS);
      const startupCpu = await cpuTimes(startupCommands, CPU_RUNS);
      console.log(
        `\nNode ${version}: start-up, wall time (${STARTUP_RUNS} interleaved rounds; ratio of medians to node -e 0, guard <= ${GUARD.startupWall}):`,
      );
      const startupBase = startup[0] as Timing;
      for (const t of startup) {
        const verdict =
          t === startupBase || t.name.startsWith("floor")
            ? ""
            : guard(
                `Node ${version}: ${t.name} / node -e 0`,
                t.median / startupBase.median,
                GUARD.startupWall,
              );
        console.log(row(t, startupBase) + verdict);
      }
      console.log(
        `CPU time (user + system, median of ${CPU_RUNS} interleaved runs; hardly depends on the load):`,
      );
      printCpu(startupCpu);

      const renewalFloor: Command = {
        // What any renewal with openid-client loads before its own work: openid-client builds each
        // request's headers with `new Headers()` and checks each answer against `Response` (the first
        // touch of either loads Node's bundled undici), signs and hashes with node:crypto, and the
        // request goes out through node:http(s).
        name: "floor: Headers, Response, https, crypto",
        argv: [node, "-e", 'new Headers(); new Response(""); require("node:https"); require("node:crypto")'],
        env,
      };
      const networkCommands: Command[] = [
        base,
        renewalFloor,
        { name: "nix-cache-login refresh", argv: [node, CLI, "refresh"], env },
        {
          name: "nix-cache-login service-account",
          argv: [node, CLI, "service-account", "--config", saConfig],
          env,
        },
      ];
      realm.clearRequests();
      const network = await interleaved(networkCommands, NETWORK_RUNS);
      const tokenRequests = realm.countRequests("/token");
      const refreshRequests = realm.requests.length;
      const refreshRuns = NETWORK_RUNS + 3;

      realm.clearRequests();
      await exec(node, [CLI, "refresh"], env);
      const perRefresh = realm.requests.map((q) => `${q.method} ${q.path}`);

      console.log(
        `\nNode ${version}: against the local realm on 127.0.0.1, wall time (${NETWORK_RUNS} interleaved rounds; guard: <= ${GUARD.renewalWall}x the renewal floor):`,
      );
      const floorTiming = network[1] as Timing;
      for (const t of network) {
        const verdict = t.name.startsWith("nix-cache-login")
          ? `  (${(t.median / floorTiming.median).toFixed(3)}x the floor)` +
            guard(
              `Node ${version}: ${t.name} / renewal floor`,
              t.median / floorTiming.median,
              GUARD.renewalWall,
            )
          : "";
        console.log(row(t, network[0] as Timing) + verdict);
      }
      console.log(`CPU time (user + system, median of ${CPU_RUNS} interleaved runs):`);
      printCpu(await cpuTimes(networkCommands, CPU_RUNS));
      console.log(
        `HTTP requests per refresh with a cached discovery document: ${perRefresh.length} (${perRefresh.join(", ")})`,
      );
      console.log(
        `  (all refresh + service-account runs above: ${refreshRequests} requests, ${tokenRequests} to the token endpoint, for ${refreshRuns * 2} runs)`,
      );

      const rss = await peakRss(
        [base, ...startupCommands.slice(2), renewalFloor, ...networkCommands.slice(2)],
        RSS_RUNS,
      );
      const baseRss = rss.get(base.name) as number;
      console.log(
        `\nNode ${version}: peak RSS (GNU time, median of ${RSS_RUNS} interleaved runs; guard <= ${GUARD.rss}x node -e 0 for every command):`,
      );
      for (const [k, v] of rss) {
        const ratio = v / baseRss;
        const verdict = k.startsWith("nix-cache-login")
          ? guard(`Node ${version}: peak RSS of ${k} / node -e 0`, ratio, GUARD.rss, (x) => x.toFixed(2))
          : "";
        console.log(`  ${k.padEnd(46)} ${String(v).padStart(7)} KiB  ratio ${ratio.toFixed(2)}${verdict}`);
      }

      // Big netrc files: status (parse) and service-account (parse, upsert, write) at each size.
      const netrcCommands: Command[] = [base];
      for (const n of [10, 1000, 10000]) {
        for (const kind of ["status", "sa"]) {
          const config = await netrcWorkspace(dir, kind, n, realm.issuer, secretFile);
          netrcCommands.push(
            kind === "status"
              ? { name: `status, ${n} netrc entries`, argv: [node, CLI, "status", "--config", config], env }
              : {
                  name: `service-account (upsert), ${n} entries`,
                  argv: [node, CLI, "service-account", "--config", config],
                  env,
                },
          );
        }
      }
      const netrcSizes = await interleaved(netrcCommands, 10, 1, true);
      console.log(`\nNode ${version}: netrc size (10 interleaved rounds; each netrc line is ~100 bytes):`);
      for (const t of netrcSizes) console.log(row(t, netrcSizes[0] as Timing));
      const bigConfig = await netrcWorkspace(dir, "status", BIG_NETRC, realm.issuer, secretFile);
      const big = await timeAndRss(
        { name: "status", argv: [node, CLI, "status", "--config", bigConfig], env },
        3,
      );
      console.log(
        `  status, ${BIG_NETRC} netrc entries (GNU time, median of 3)  ${big.seconds.toFixed(2)} s${guard(`Node ${version}: status on a ${BIG_NETRC}-entry netrc, seconds`, big.seconds, GUARD.bigNetrcSeconds, (x) => `${x.toFixed(2)} s`)}, peak ${big.mib.toFixed(1)} MiB${guard(`Node ${version}: status on a ${BIG_NETRC}-entry netrc, peak MiB`, big.mib, GUARD.bigNetrcMiB, (x) => `${x.toFixed(1)} MiB`)}`,
      );
    }
    const node = process.execPath;
    const networkCommands: Command[] = [
      { name: "nix-cache-login refresh", argv: [node, CLI, "refresh"], env },
      {
        name: "nix-cache-login service-account",
        argv: [node, CLI, "service-account", "--config", saConfig],
        env,
      },
    ];

    if (opts.profile !== undefined) {
      console.log(`\nCPU profiles (--cpu-prof, self time by file; heap profiles beside them):`);
      await profile(opts.profile, node, networkCommands);
    }
    if (opts.quick === true) return;

    if (existsSync("/usr/bin/chromium")) {
      const runs = 5;
      const l = await benchLogin(env, runs);
      console.log(`\nBrowser login through headless Chromium (${runs} runs, medians):`);
      console.log(`  whole login, CLI start to exit (incl. starting Chromium)  ${ms(median(l.wall))}`);
      console.log(
        `  of which the provider's token response                     ${ms(median(l.tokenResponse))}`,
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

main()
  .then(() => {
    const broken = guards.filter((g) => !g.ok);
    console.log(`\nGuards: ${guards.length - broken.length} of ${guards.length} hold.`);
    for (const g of broken) console.log(`  BROKEN: ${g.what}: ${g.figure}`);
    if (opts.check === true && broken.length > 0) process.exitCode = 1;
  })
  .catch((e: unknown) => {
    console.error(`bench failed: ${e instanceof Error ? e.message : String(e)}`);
    process.exitCode = 1;
  });
