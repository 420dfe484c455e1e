// Scratch measurement for the issue 13 report (not committed).
import { spawn, type ChildProcess } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { StateStore } from "../src/store/state.ts";
import { writeState } from "../src/store/write.ts";
import { makeWorkspace } from "../test/support/cli.ts";
import { startRealm } from "../test/support/realm.ts";

const CLI = process.argv[2] as string;
const reps = Number(process.argv[3] ?? 5);
const killReps = Number(process.argv[4] ?? 3);
function runOne(env: Record<string, string>, onSpawn?: (c: ChildProcess) => void): Promise<number | null> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [CLI, "refresh"], { env, stdio: ["ignore", "ignore", "ignore"] });
    onSpawn?.(c);
    c.on("close", (code) => resolve(code));
  });
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const realm = await startRealm({ tls: false, accessTokenTTL: 3600, refreshTokenTTL: 86400 });
const ws = await makeWorkspace({ issuer: realm.issuer, client_id: "nix-cache", cache_host: "127.0.0.1" });
const tokens = await realm.signInOverHttp();
const store = new StateStore(ws.stateDir, realm.issuer, "nix-cache");
await mkdir(ws.stateDir, { recursive: true });
await writeState(store, { ...store.empty("user"), refresh_token: tokens.refresh_token as string });
if ((await runOne(ws.env)) !== 0) throw new Error("first refresh failed");
const par: number[] = [];
for (let i = 0; i < reps; i++) {
  realm.clearRequests();
  const t = performance.now();
  const codes = await Promise.all(Array.from({ length: 100 }, () => runOne(ws.env)));
  par.push(performance.now() - t);
  const bad = codes.filter((c) => c !== 0).length;
  console.log(`100 parallel refresh: ${(par.at(-1)! / 1000).toFixed(2)} s, ${bad} failed, ${realm.countRequests("/token")} token requests`);
}
console.log(`median 100 parallel: ${(median(par) / 1000).toFixed(2)} s`);
const after: number[] = [];
for (let i = 0; i < killReps; i++) {
  let arrived!: () => void;
  const got = new Promise<void>((r) => (arrived = r));
  realm.fault = (req) => (req.method === "POST" && req.path.endsWith("/token") ? (arrived(), { kind: "hold", until: new Promise(() => undefined) }) : "pass");
  let child!: ChildProcess;
  const victim = runOne(ws.env, (c) => (child = c));
  await got;
  child.kill("SIGKILL");
  await victim;
  realm.fault = undefined;
  const t = performance.now();
  const code = await runOne(ws.env);
  after.push(performance.now() - t);
  console.log(`first refresh after a SIGKILLed holder: ${(after.at(-1)! / 1000).toFixed(2)} s, exit ${code}`);
}
console.log(`median after SIGKILL: ${(median(after) / 1000).toFixed(2)} s`);
await realm.stop();
await ws.cleanup();
