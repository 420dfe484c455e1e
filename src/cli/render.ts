import { CliError, ExitCode } from "../errors.ts";
import { docPage } from "../docs.ts";
import { printableLines } from "../text.ts";

interface Sink {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
  signal: AbortSignal;
}

/**
 * The one place errors become text and an exit code: `error:` and `hint:` lines on stderr (and a
 * `see:` line naming the page of docs/ that explains this kind of error, see ./docs.ts), and
 * with --json also `{"error":{"code","message","hint","exit_code"}}` (one line) on stdout, so that a
 * program reading stdout gets an answer it can act on. Anything that is not a CliError is a bug
 * or an unexpected failure: code `internal`, exit 1, the stack only with --verbose.
 */
export function renderError(e: unknown, to: Sink, o: { verbose: boolean; json: boolean }): number {
  const { code, exitCode, message, hint } = describe(e, to.signal, o.verbose);
  // Messages may quote a provider or a file: whatever got through, no control characters here.
  const write = (text: string) => to.stderr.write(printableLines(text));
  write(`error: ${message}\n`);
  if (hint !== undefined) write(`hint: ${hint}\n`);
  const page = docPage(code);
  if (page !== undefined) write(`see: ${page}\n`);
  if (o.verbose && !to.signal.aborted) {
    if (e instanceof CliError) {
      if (e.detail !== undefined) write(`verbose: ${e.detail}\n`);
      if (e.cause !== undefined) write(`verbose: cause: ${describeCause(e.cause)}\n`);
    } else {
      const stack = (e as Error | undefined)?.stack;
      if (stack !== undefined) write(`${stack}\n`);
    }
  }
  if (o.json) {
    const error = { code, message, hint: hint ?? null, exit_code: exitCode };
    // One line, like the --json result of login, refresh, service-account and logout.
    to.stdout.write(`${JSON.stringify({ error })}\n`);
  }
  return exitCode;
}

function describe(
  e: unknown,
  signal: AbortSignal,
  verbose: boolean,
): { code: string; exitCode: number; message: string; hint: string | undefined } {
  if (signal.aborted) {
    return { code: "interrupted", exitCode: ExitCode.interrupted, message: "interrupted", hint: undefined };
  }
  if (e instanceof CliError) return { code: e.code, exitCode: e.exitCode, message: e.message, hint: e.hint };
  const err = e as NodeJS.ErrnoException | undefined;
  return {
    code: "internal",
    exitCode: ExitCode.failure,
    message: err?.message ?? String(e),
    hint: verbose ? undefined : "run again with --verbose for details",
  };
}

function describeCause(cause: unknown): string {
  const parts: string[] = [];
  for (let cur = cause, depth = 0; cur !== undefined && cur !== null && depth < 5; depth++) {
    const c = cur as { name?: string; message?: string; code?: string; cause?: unknown };
    // A JSON parse error quotes the text around the fault: in a token response, part of a token.
    const message = c.name === "SyntaxError" ? "(message withheld: it may quote a token)" : c.message;
    parts.push([c.name, c.code, message].filter((x) => x !== undefined && x !== "").join(" "));
    cur = c.cause;
  }
  return parts.join(" <- ");
}
