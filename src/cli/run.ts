/**
 * argv -> command -> exit code, from the one command table (./table.ts). Every error of every
 * command ends here and is rendered by ./render.ts.
 *
 * Nothing below calls process.exit, so tests can call run() in-process as well as through the
 * built binary.
 */
import { withFields, type Context } from "../context.ts";
import { ExitCode } from "../errors.ts";
import { OutputClosed } from "./output.ts";
import { parseCommandLine } from "./parse.ts";
import { renderError } from "./render.ts";
import { terminalJson } from "../text.ts";
import { bool, findCommand, JSON_RESULT, str, VERSION } from "./table.ts";

export type Deps = Omit<Context, "verbose" | "configFlag">;

export async function run(argv: string[], deps: Deps): Promise<number> {
  // Until argv is parsed, from the raw words: a usage error is rendered the way it was asked for.
  let verbose = argv.includes("--verbose") || argv.includes("-v");
  let json = argv.includes("--json");
  try {
    const parsed = parseCommandLine(argv);
    if (parsed.kind === "help") {
      const { helpText } = await import("./help.ts");
      deps.stdout.write(helpText(parsed.command));
      return ExitCode.ok;
    }
    if (parsed.kind === "version") {
      deps.stdout.write(`${VERSION}\n`);
      return ExitCode.ok;
    }
    const { command, values } = parsed;
    verbose = values.verbose === true;
    json = values.json === true;
    const spec = findCommand(command);
    if (spec === undefined) throw new Error(`no such command: ${command}`);
    const result: Record<string, unknown> = { command };
    const ctx = withFields(deps, {
      verbose,
      configFlag: str(values.config),
      quiet: bool(values.quiet),
      json: bool(values.json),
      result,
      // On a terminal only. Whether stderr is one is asked only when a request is slow: a timer's
      // `refresh --min-valid` makes no request and need not ask.
      onSlowRequest:
        values.quiet === true
          ? undefined
          : (host) => {
              if (deps.stderr.isTTY === true) deps.stderr.write(`waiting for ${host} ...\n`);
            },
    });
    const code = await spec.run(ctx, values);
    // The commands whose --json is what they did (status and doctor print their own report).
    if (json && spec.options.includes(JSON_RESULT) && Object.keys(result).length > 1) {
      deps.stdout.write(`${terminalJson(result)}\n`);
    }
    return code;
  } catch (e) {
    // `| head`: the reader has what it wanted.
    if (e instanceof OutputClosed) return ExitCode.ok;
    return renderError(e, deps, { verbose, json });
  }
}
