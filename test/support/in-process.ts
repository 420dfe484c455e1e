/**
 * Runs the CLI in this process: `run(argv, deps)` of src/cli/run.ts with the workspace's
 * environment and captured stdout and stderr, for the argv, configuration and error-path tests
 * that need no browser and no other process. Files are real (the workspace's temp HOME); the
 * built-dist/ tests (./cli.ts) stay for start-up, Nix, Apache and the browser.
 */
import { run } from "../../src/cli/run.ts";
import { assertNoSecrets, harvestSecrets, type RunResult, type Workspace } from "./cli.ts";

export interface InProcessOptions {
  env?: Record<string, string | undefined>;
  /** What stdout.write does (default: append to the captured text). */
  stdoutWrite?: (text: string) => void;
  isTTY?: boolean;
}

export async function runInProcess(
  ws: Workspace,
  argv: string[],
  opts: InProcessOptions = {},
): Promise<Omit<RunResult, "signal">> {
  for (const a of argv) assertNoSecrets(ws, a, "argv");
  const env: Record<string, string> = { ...ws.env };
  for (const [k, v] of Object.entries(opts.env ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  let stdout = "";
  let stderr = "";
  const code = await run(argv, {
    env,
    stdout: { write: opts.stdoutWrite ?? ((t: string) => (stdout += t)), isTTY: opts.isTTY ?? false },
    stderr: { write: (t: string) => (stderr += t), isTTY: opts.isTTY ?? false },
    now: () => new Date(),
    signal: new AbortController().signal,
  });
  await harvestSecrets(ws);
  assertNoSecrets(ws, stdout, "stdout");
  assertNoSecrets(ws, stderr, "stderr");
  return { code, stdout, stderr };
}
