import { CliError, ExitCode } from "../errors.ts";
import { docPage } from "../docs.ts";
import { oneLine, printableLines, terminalJson } from "../text.ts";

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
  // Messages quote providers, files, keys and the command line: each line written here is one line
  // (a line break in a quoted value is shown as `\n`, so it cannot forge an `error:` line) and has
  // no control characters. A message spans lines only through its items, each one line too.
  const write = (prefix: string, text: string) => to.stderr.write(`${prefix}${oneLine(text)}\n`);
  const items = e instanceof CliError && !to.signal.aborted ? e.items : undefined;
  write("error: ", items === undefined ? message : (e as CliError).headline);
  for (const item of items ?? []) write("  ", item);
  if (hint !== undefined) write("hint: ", hint);
  const page = docPage(code);
  if (page !== undefined) write("see: ", page);
  if (o.verbose && !to.signal.aborted) {
    if (e instanceof CliError) {
      if (e.detail !== undefined) write("verbose: ", e.detail);
      if (e.cause !== undefined) write("verbose: cause: ", describeCause(e.cause));
    } else {
      // A stack is lines of its own; the message at its top may quote anything.
      const stack = (e as Error | undefined)?.stack;
      if (stack !== undefined) to.stderr.write(printableLines(`${stack}\n`));
    }
  }
  if (o.json) {
    const error = { code, message, hint: hint ?? null, exit_code: exitCode };
    // One line, like the --json result of login, refresh, service-account and logout.
    to.stdout.write(`${terminalJson({ error })}\n`);
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
