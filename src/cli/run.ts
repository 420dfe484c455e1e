/**
 * argv -> command -> exit code, from the one command table (./table.ts). Every error of every
 * command ends here and is rendered by ./render.ts.
 *
 * Nothing below calls process.exit, so tests can call run() in-process as well as through the
 * built binary.
 */
import { withFields, type Context } from "../context.ts";
import { ExitCode } from "../errors.ts";
import { parseCommandLine } from "./parse.ts";
import { renderError } from "./render.ts";
import { onSlowRequest } from "../net/slow-notice.ts";
import { bool, findCommand, str, VERSION } from "./table.ts";

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
    });
    // A request that takes long says so on a terminal. Whether stderr is one is asked only then:
    // a timer's `refresh --min-valid` makes no request and need not ask.
    if (values.quiet !== true) {
      onSlowRequest((host) => {
        if (deps.stderr.isTTY === true) deps.stderr.write(`waiting for ${host} ...\n`);
      });
    }
    const code = await spec.run(ctx, values);
    // The commands with a --json result (status and doctor print their own report).
    if (json && command !== "status" && command !== "doctor" && Object.keys(result).length > 1) {
      deps.stdout.write(`${JSON.stringify(result)}\n`);
    }
    return code;
  } catch (e) {
    return renderError(e, deps, { verbose, json });
  }
}
