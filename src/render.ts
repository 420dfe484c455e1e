import { CliError, ExitCode } from "./errors.ts";
import { printableLines } from "./terminal-text.ts";

interface Sink {
  stdout?: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
  signal: AbortSignal;
}

/**
 * The one place errors become text on stderr and an exit code. With `json` (a command's --json),
 * stdout also gets one object {"error": {"code", "message", "hint"}}.
 */
export function renderError(e: unknown, to: Sink, verbose: boolean, json = false): number {
  if (json && to.stdout !== undefined) {
    const err =
      to.signal.aborted || !(e instanceof CliError)
        ? undefined
        : { code: e.code, message: e.message, hint: e.hint ?? null };
    const body = err ?? {
      code: to.signal.aborted ? "interrupted" : "failure",
      message: to.signal.aborted ? "interrupted" : String((e as Error).message ?? e),
      hint: null,
    };
    to.stdout.write(`${JSON.stringify({ error: body })}\n`);
  }
  return renderText(e, to, verbose);
}

function renderText(e: unknown, to: Sink, verbose: boolean): number {
  if (to.signal.aborted) {
    to.stderr.write("error: interrupted\n");
    return ExitCode.interrupted;
  }
  // Messages may quote a provider or a file: whatever got through, no control characters here.
  const write = (text: string) => to.stderr.write(printableLines(text));
  if (e instanceof CliError) {
    write(`error: ${e.message}\n`);
    if (e.hint !== undefined) write(`hint: ${e.hint}\n`);
    if (verbose && e.detail !== undefined) write(`verbose: ${e.detail}\n`);
    if (verbose && e.cause !== undefined) write(`verbose: cause: ${describeCause(e.cause)}\n`);
    return e.exitCode;
  }
  const err = e as NodeJS.ErrnoException;
  write(`error: ${err.message ?? String(e)}\n`);
  if (verbose && err.stack !== undefined) to.stderr.write(`${err.stack}\n`);
  else to.stderr.write("hint: run again with --verbose for details\n");
  return ExitCode.failure;
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
