import { run } from "./cli/run.ts";
import { fdOutput } from "./cli/output.ts";

// For `timer install` alone (Context.launcher): out of the environment every program we start gets.
const launcher = process.env.NIX_CACHE_LOGIN_LAUNCHER;
delete process.env.NIX_CACHE_LOGIN_LAUNCHER;

// Ctrl-C aborts the running command (servers close, nothing half-written); a second one exits now.
// Set up when a command first asks for the signal: `status` and `--help` have nothing to abort and
// end within milliseconds, so they keep Node's default (exit on the signal) and skip the cost.
let controller: AbortController | undefined;
function signal(): AbortSignal {
  if (controller === undefined) {
    const c = new AbortController();
    controller = c;
    process.once("SIGINT", () => {
      c.abort();
      process.once("SIGINT", () => process.exit(130));
    });
    process.once("SIGTERM", () => c.abort());
  }
  return controller.signal;
}

void run(process.argv.slice(2), {
  env: process.env,
  launcher,
  stdout: fdOutput(1),
  stderr: fdOutput(2),
  now: () => new Date(),
  // A getter: process.stdin sets up a stream, and only `login` on a terminal reads it.
  get stdin() {
    return process.stdin;
  },
  get signal() {
    return signal();
  },
}).then((code) => {
  process.exitCode = code;
});
