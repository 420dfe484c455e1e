/**
 * How the bench measures a whole process: spawned and awaited (the realm answers from the
 * bench's own event loop meanwhile), wall time from spawn to exit, CPU time from a preloaded exit
 * hook, peak RSS and seconds from GNU time; medians of interleaved runs.
 */
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

export function exec(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  // Async on purpose: the realm answers from this process's event loop while the command runs.
  return new Promise((resolve) => {
    const started = performance.now();
    const c = spawn(cmd, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    c.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    c.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    c.on("exit", () => {
      const ms = performance.now() - started;
      c.on("close", (code) => resolve({ code, stdout, stderr, ms }));
    });
  });
}

export interface Command {
  name: string;
  argv: string[];
  env: NodeJS.ProcessEnv;
}

export interface Timing {
  name: string;
  median: number;
  mean: number;
  stddev: number;
  /** Median over the rounds of (this run / the baseline's run in the same round). */
  pairedRatio: number;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/**
 * Every command once per round, in turn, for `runs` rounds (after `warmup` untimed ones). The first
 * command is the baseline. Every run must exit 0, unless `anyExit`.
 */
export async function interleaved(
  commands: Command[],
  runs: number,
  warmup = 3,
  /** Time commands that may fail (e.g. status without a token exits 3). */
  anyExit = false,
): Promise<Timing[]> {
  const times = commands.map(() => [] as number[]);
  for (let round = -warmup; round < runs; round++) {
    for (const [i, c] of commands.entries()) {
      const r = await exec(c.argv[0] as string, c.argv.slice(1), c.env);
      if (r.code !== 0 && !anyExit) throw new Error(`${c.name} exited with ${r.code}: ${r.stderr}`);
      if (round >= 0) times[i]?.push(r.ms);
    }
  }
  const base = times[0] as number[];
  return commands.map((c, i) => {
    const xs = times[i] as number[];
    const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
    const stddev = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1));
    return {
      name: c.name,
      median: median(xs),
      mean,
      stddev,
      pairedRatio: median(xs.map((x, k) => x / (base[k] as number))),
    };
  });
}

/** Peak RSS in KiB (GNU time), median of `runs` interleaved runs of each command. */
export async function peakRss(commands: Command[], runs: number): Promise<Map<string, number>> {
  const rss = commands.map(() => [] as number[]);
  for (let round = 0; round < runs; round++) {
    for (const [i, c] of commands.entries()) {
      const r = await exec("/usr/bin/time", ["-f", "%M", ...c.argv], c.env);
      if (r.code !== 0) throw new Error(`${c.name} exited with ${r.code}: ${r.stderr}`);
      rss[i]?.push(Number(r.stderr.trim().split("\n").pop()));
    }
  }
  return new Map(commands.map((c, i) => [c.name, median(rss[i] as number[])]));
}

/**
 * CPU time (user + system, all threads) of each command, median of `runs` interleaved runs, from
 * process.cpuUsage() at exit (a preloaded hook, the same for every command). Unlike wall time it
 * hardly depends on what else the machine runs.
 */
export async function cpuTimes(commands: Command[], runs: number): Promise<Map<string, number>> {
  const dir = await mkdtemp(join(tmpdir(), "ncl-bench-cpu-"));
  const hook = join(dir, "hook.cjs");
  const out = join(dir, "cpu");
  await writeFile(
    hook,
    `process.on("exit", () => { const u = process.cpuUsage(); require("node:fs").writeFileSync(${JSON.stringify(out)}, String((u.user + u.system) / 1000)); });\n`,
  );
  const cpu = commands.map(() => [] as number[]);
  try {
    for (let round = -1; round < runs; round++) {
      for (const [i, c] of commands.entries()) {
        const r = await exec(c.argv[0] as string, ["--require", hook, ...c.argv.slice(1)], c.env);
        if (r.code !== 0) throw new Error(`${c.name} exited with ${r.code}: ${r.stderr}`);
        if (round >= 0) cpu[i]?.push(Number(await readFile(out, "utf8")));
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return new Map(commands.map((c, i) => [c.name, median(cpu[i] as number[])]));
}

/** Wall seconds and peak RSS in MiB from GNU time (as `/usr/bin/time -v` reports them), medians. */
export async function timeAndRss(c: Command, runs: number): Promise<{ seconds: number; mib: number }> {
  const seconds: number[] = [];
  const mib: number[] = [];
  for (let i = 0; i < runs; i++) {
    // status exits 3 here (the big netrc does not hold the token): any exit will do.
    const r = await exec("/usr/bin/time", ["-f", "%e %M", ...c.argv], c.env);
    const [e, m] = (r.stderr.trim().split("\n").pop() ?? "").split(" ").map(Number);
    if (e === undefined || m === undefined || !Number.isFinite(e) || !Number.isFinite(m)) {
      throw new Error(`${c.name}: no figures from GNU time: ${r.stderr}`);
    }
    seconds.push(e);
    mib.push(m / 1024);
  }
  return { seconds: median(seconds), mib: median(mib) };
}
