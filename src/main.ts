import { run } from "./cli.ts";

// Ctrl-C aborts the running command (servers close, nothing half-written); a second one exits now.
const controller = new AbortController();
process.once("SIGINT", () => {
  controller.abort();
  process.once("SIGINT", () => process.exit(130));
});
process.once("SIGTERM", () => controller.abort());

// `nix-cache-login --help | head`: a closed pipe is not an error worth a stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code === "EPIPE") process.exit(process.exitCode ?? 0);
    throw e;
  });
}

void run(process.argv.slice(2), {
  env: process.env,
  stdout: process.stdout,
  stderr: process.stderr,
  now: () => new Date(),
  signal: controller.signal,
}).then((code) => {
  process.exitCode = code;
});
