/**
 * Measures the kill window of a renewal (README, "Reliability"): between the provider's answer
 * (the refresh token is rotated there) and the state write, a SIGKILL loses the new refresh token,
 * and the next `refresh` replays the spent one, which ends the session (exit 3). Against the
 * Keycloak-shaped realm (rotation on, reuse ends the session), each trial kills one `refresh` at a
 * uniformly random moment of its run and counts the sessions lost.
 *
 *   npm run build && node --import tsx scripts/kill-window.ts [TRIALS]
 */
import { spawn } from "node:child_process";
import { CLI, runCli } from "../test/support/cli.ts";
import { realmUserWorkspace, seedSession } from "../test/support/realm-workspaces.ts";
import { startRealm } from "../test/support/realm.ts";

const trials = Number(process.argv[2] ?? "200");
const realm = await startRealm({ tls: false, accessTokenTTL: 300, refreshTokenTTL: 3600 });
const ws = await realmUserWorkspace(realm, "127.0.0.1");

async function signedIn(): Promise<void> {
  await seedSession(ws, realm);
  const r = await runCli(ws, ["refresh"]);
  if (r.code !== 0) throw new Error(`refresh failed: ${r.stderr}`);
}

/** One `refresh`, killed after `delayMs` (or not, when it ends first); the ms it ran. */
function killedRefresh(delayMs: number | undefined): Promise<number> {
  const started = performance.now();
  const child = spawn(process.execPath, [CLI, "refresh"], { env: ws.env, stdio: "ignore" });
  const timer = delayMs === undefined ? undefined : setTimeout(() => child.kill("SIGKILL"), delayMs);
  return new Promise((resolve) =>
    child.on("close", () => {
      clearTimeout(timer);
      resolve(performance.now() - started);
    }),
  );
}

// How long a whole `refresh` takes here: the kills fall anywhere in it.
await signedIn();
let total = 0;
for (let i = 0; i < 10; i++) total += await killedRefresh(undefined);
const runMs = total / 10;

let lost = 0;
let answered = 0;
for (let i = 0; i < trials; i++) {
  await signedIn();
  let gotAnswer = false;
  realm.fault = (req) =>
    req.method === "POST" && req.path.endsWith("/token")
      ? {
          kind: "replace",
          edit: (real) => {
            gotAnswer = true;
            return real;
          },
        }
      : "pass";
  await killedRefresh(Math.random() * runMs);
  realm.fault = undefined;
  if (gotAnswer) answered++;
  const next = await runCli(ws, ["refresh"]);
  if (next.code === 3) lost++;
  else if (next.code !== 0) throw new Error(`unexpected exit ${next.code}: ${next.stderr}`);
}
console.log(
  `kill window: ${lost} of ${trials} refreshes killed at a random moment lost the session (${((100 * lost) / trials).toFixed(1)}%); the provider had answered in ${answered}; a refresh runs ${runMs.toFixed(0)} ms, so the window is about ${((lost / trials) * runMs).toFixed(1)} ms`,
);
await realm.stop();
await ws.cleanup();
