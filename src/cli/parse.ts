/** argv -> what to do, by node:util's parseArgs under the one command table (./table.ts). */
import { parseArgs } from "node:util";
import { CliError, ExitCode } from "../errors.ts";
import { closest } from "../suggest.ts";
import { ALL_OPTIONS, COMMANDS, DEFAULT_COMMAND, findCommand, GLOBAL_OPTIONS, NAME } from "./table.ts";
import type { CommandSpec, OptionSpec, Values } from "./spec.ts";

export type Parsed =
  | { kind: "help"; command: string | undefined }
  | { kind: "version" }
  | { kind: "run"; command: string; values: Values };

function usage(code: string, message: string, command?: string): CliError {
  return new CliError(code, message, {
    exitCode: ExitCode.usage,
    hint: `see \`${NAME}${command === undefined ? "" : ` ${command}`} --help\``,
  });
}

const BY_NAME = new Map(ALL_OPTIONS.map((o) => [o.name, o]));

/** The command named in argv (for choosing the option list a suggestion comes from). */
function commandIn(argv: string[]): CommandSpec | undefined {
  return COMMANDS.find((c) => argv.includes(c.name));
}

function optionNames(spec: CommandSpec | undefined): string[] {
  return (spec === undefined ? ALL_OPTIONS : [...GLOBAL_OPTIONS, ...spec.options]).map((o) => `--${o.name}`);
}

/** One code for each kind of usage error, however many places find it. */
const badArgument = (message: string, command?: string) => usage("bad_argument", message, command);
const noSuchOption = (message: string, command?: string) => usage("unknown_option", message, command);

function unknownOption(word: string, argv: string[]): CliError {
  const spec = commandIn(argv);
  const suggestion = word.startsWith("--") ? closest(word, optionNames(spec)) : undefined;
  return noSuchOption(
    `unknown option ${word}${suggestion === undefined ? "" : ` (did you mean ${suggestion}?)`}`,
    spec?.name,
  );
}

function badValue(option: OptionSpec, argv: string[]): CliError {
  const name = `--${option.name}`;
  return usage(
    "bad_option_value",
    option.value === undefined
      ? `option ${name} takes no value`
      : `option ${name} needs a value (write ${name}=VALUE for one that starts with "-")`,
    commandIn(argv)?.name,
  );
}

/** Every option of every command, for one parse: options may come before or after the command. */
const PARSE_OPTIONS = Object.fromEntries(
  ALL_OPTIONS.map((o) => [
    o.name,
    {
      type: o.value === undefined ? ("boolean" as const) : ("string" as const),
      ...(o.short === undefined ? {} : { short: o.short }),
    },
  ]),
);

/**
 * argv -> option values and the other words, by node:util's parseArgs. Not in strict mode, whose
 * errors are long and name options as `'-c, --config <value>'`: its tokens are checked here, in
 * argv order, by strict mode's rules, so that the first bad word gets a one-line message of ours.
 */
function tokenize(argv: string[]): { values: Values; positionals: string[] } {
  const { tokens, values, positionals } = parseArgs({
    args: argv,
    options: PARSE_OPTIONS,
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  for (const t of tokens) {
    if (t.kind !== "option") continue;
    const option = BY_NAME.get(t.name);
    if (option === undefined) throw unknownOption(t.rawName, argv);
    const bad =
      option.value === undefined
        ? t.value !== undefined
        : t.value === undefined || (t.inlineValue === false && t.value.startsWith("-"));
    if (bad) throw badValue(option, argv);
  }
  return { values: { ...values } as Values, positionals };
}

export function parseCommandLine(argv: string[]): Parsed {
  const { values, positionals } = tokenize(argv);
  const [first, ...rest] = positionals;
  if (first === "help") {
    if (rest.length > 1) throw badArgument(`unexpected argument ${JSON.stringify(rest[1])}`);
    if (rest[0] !== undefined && findCommand(rest[0]) === undefined) throw unknownCommand(rest[0]);
    return { kind: "help", command: rest[0] };
  }
  const name = first ?? DEFAULT_COMMAND;
  const spec = findCommand(name);
  if (spec === undefined) throw unknownCommand(name);
  if (values.help === true) return { kind: "help", command: first };
  if (values.version === true) return { kind: "version" };
  const args = spec.args;
  if (args !== undefined && rest.length === 1) {
    const word = rest[0] as string;
    if (!args.choices.includes(word)) {
      const suggestion = closest(word, args.choices);
      throw badArgument(
        `${spec.name}: unknown ${args.name} ${JSON.stringify(word)} (one of ${args.choices.join(", ")}${suggestion === undefined ? "" : `; did you mean ${suggestion}?`})`,
        spec.name,
      );
    }
    values[""] = word;
  } else if (args?.required === true && rest.length === 0) {
    throw usage(
      "missing_argument",
      `${spec.name} needs a ${args.name}: ${args.choices.join(", ")}`,
      spec.name,
    );
  } else if (rest.length > 0) {
    throw badArgument(`unexpected argument ${JSON.stringify(rest[args === undefined ? 0 : 1])}`, spec.name);
  }
  const allowed = new Map([...GLOBAL_OPTIONS, ...spec.options].map((o) => [o.name, o]));
  for (const key of Object.keys(values)) {
    if (key === "") continue;
    const option = allowed.get(key);
    if (option === undefined) throw noSuchOption(`${spec.name} has no option --${key}`, spec.name);
    for (const other of option.conflicts ?? []) {
      if (values[other] !== undefined) {
        throw usage("conflicting_options", `--${key} cannot be used with --${other}`, spec.name);
      }
    }
  }
  return { kind: "run", command: spec.name, values };
}

function unknownCommand(name: string): CliError {
  const suggestion = closest(
    name,
    COMMANDS.map((c) => c.name),
  );
  return usage(
    "unknown_command",
    `unknown command ${JSON.stringify(name)}${suggestion === undefined ? "" : ` (did you mean ${suggestion}?)`}`,
  );
}
