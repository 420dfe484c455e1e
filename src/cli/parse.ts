/** argv -> what to do, by Node's own parser (node:util parseArgs) under the command table. */
import { CliError, ExitCode } from "../errors.ts";
import { closest } from "../suggest.ts";
import {
  ALL_OPTIONS,
  COMMANDS,
  DEFAULT_COMMAND,
  findCommand,
  GLOBAL_OPTIONS,
  NAME,
  type CommandSpec,
  type Values,
} from "./table.ts";

export type Parsed =
  | { kind: "help"; command: string | undefined }
  | { kind: "version" }
  | { kind: "run"; command: string; values: Values };

function usage(message: string, code: string, command?: string): CliError {
  return new CliError(message, {
    exitCode: ExitCode.usage,
    code,
    hint: `see \`${NAME}${command === undefined ? "" : ` ${command}`} --help\``,
  });
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

/** The command named in argv (for choosing the option list a suggestion comes from). */
function commandIn(argv: string[]): CommandSpec | undefined {
  return COMMANDS.find((c) => argv.includes(c.name));
}

function optionNames(spec: CommandSpec | undefined): string[] {
  return (spec === undefined ? ALL_OPTIONS : [...GLOBAL_OPTIONS, ...spec.options]).map((o) => `--${o.name}`);
}

/** parseArgs' messages are long and name options as `'-c, --config <value>'`; ours are one line. */
function parseError(e: unknown, argv: string[]): CliError {
  const err = e as NodeJS.ErrnoException;
  const spec = commandIn(argv);
  const quoted = /'([^']*)'/.exec(err.message)?.[1] ?? "";
  const named = /--?[A-Za-z0-9-]+/.exec(quoted.split(" ").find((w) => w.startsWith("--")) ?? quoted)?.[0];
  // `-c` in a message about a known option is shown as `--config`.
  const long = ALL_OPTIONS.find((o) => o.short !== undefined && `-${o.short}` === named);
  const option = long === undefined ? named : `--${long.name}`;
  if (err.code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" && option !== undefined) {
    const suggestion = option.startsWith("--") ? closest(option, optionNames(spec)) : undefined;
    return usage(
      `unknown option ${option}${suggestion === undefined ? "" : ` (did you mean ${suggestion}?)`}`,
      "unknown_option",
      spec?.name,
    );
  }
  if (err.code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE" && option !== undefined) {
    const flag = PARSE_OPTIONS[option.replace(/^-+/, "")]?.type === "boolean";
    return usage(
      flag
        ? `option ${option} takes no value`
        : `option ${option} needs a value (write ${option}=VALUE for one that starts with "-")`,
      "bad_option_value",
      spec?.name,
    );
  }
  return usage((err.message.split(/\.(\s|$)/)[0] ?? err.message).trim(), "bad_argument", spec?.name);
}

export function parseCommandLine(argv: string[]): Parsed {
  let parsed;
  try {
    // Without a single option there is nothing to parse, and loading the parser is about a tenth
    // of what `nix-cache-login status` adds to Node's own start-up.
    parsed = argv.some((a) => a.startsWith("-"))
      ? process
          .getBuiltinModule("node:util")
          .parseArgs({ args: argv, options: PARSE_OPTIONS, allowPositionals: true, strict: true })
      : { values: {}, positionals: argv };
  } catch (e) {
    if (!String((e as NodeJS.ErrnoException).code).startsWith("ERR_PARSE_ARGS_")) throw e;
    throw parseError(e, argv);
  }
  const values: Values = { ...parsed.values };
  const [first, ...rest] = parsed.positionals;
  if (first === "help") {
    if (rest.length > 1) throw usage(`unexpected argument ${JSON.stringify(rest[1])}`, "bad_argument");
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
      throw usage(
        `${spec.name}: unknown ${args.name} ${JSON.stringify(word)} (one of ${args.choices.join(", ")}${suggestion === undefined ? "" : `; did you mean ${suggestion}?`})`,
        "bad_argument",
        spec.name,
      );
    }
    values[""] = word;
  } else if (args?.required === true && rest.length === 0) {
    throw usage(
      `${spec.name} needs a ${args.name}: ${args.choices.join(", ")}`,
      "missing_argument",
      spec.name,
    );
  } else if (rest.length > 0) {
    throw usage(
      `unexpected argument ${JSON.stringify(rest[args === undefined ? 0 : 1])}`,
      "bad_argument",
      spec.name,
    );
  }
  const allowed = new Map([...GLOBAL_OPTIONS, ...spec.options].map((o) => [o.name, o]));
  for (const key of Object.keys(values)) {
    if (key === "") continue;
    const option = allowed.get(key);
    if (option === undefined) throw usage(`${spec.name} has no option --${key}`, "unknown_option", spec.name);
    for (const other of option.conflicts ?? []) {
      if (values[other] !== undefined) {
        throw usage(`--${key} cannot be used with --${other}`, "conflicting_options", spec.name);
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
    `unknown command ${JSON.stringify(name)}${suggestion === undefined ? "" : ` (did you mean ${suggestion}?)`}`,
    "unknown_command",
  );
}
