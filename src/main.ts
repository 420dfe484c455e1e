import { run } from "./cli.ts";

// Ctrl-C aborts the running command (servers close, nothing half-written); a second one exits now.
const controller = new AbortController();
process.once("SIGINT", () => {
  controller.abort();
  process.once("SIGINT", () => process.exit(130));
});
process.once("SIGTERM", () => controller.abort());

void run(process.argv.slice(2), {
  env: process.env,
  stdout: process.stdout,
  stderr: process.stderr,
  now: () => new Date(),
  signal: controller.signal,
}).then((code) => {
  process.exitCode = code;
});
