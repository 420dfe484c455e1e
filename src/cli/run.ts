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
import { findCommand, str } from "./table.ts";

declare const __VERSION__: string | undefined;
const VERSION = typeof __VERSION__ === "string" ? __VERSION__ : "0.0.0-dev";

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
    const ctx = withFields(deps, { verbose, configFlag: str(values.config) });
    return await spec.run(ctx, values);
  } catch (e) {
    return renderError(e, deps, { verbose, json });
  }
}
