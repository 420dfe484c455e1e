/** argv -> what to do, under the one command table (./table.ts). */
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

/** Every option of every command by long name and by short letter: options may come anywhere. */
const BY_NAME = new Map(ALL_OPTIONS.map((o) => [o.name, o]));
const BY_SHORT = new Map(ALL_OPTIONS.flatMap((o) => (o.short === undefined ? [] : [[o.short, o] as const])));

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

/**
 * argv -> option values and the other words, by the rules of Node's strict parseArgs: `--name`,
 * `--name=value`, `--name value`, `-n value`, `-nvalue`, flag groups such as `-vq`, and `--` before
 * words that only look like options. A value that starts with "-" must be glued on with "=".
 * Written out rather than node:util's parseArgs, which costs a timer's `refresh --min-valid` more
 * start-up time than the whole of the rest of argv handling (`npm run bench`).
 */
function tokenize(argv: string[]): { values: Values; positionals: string[] } {
  const values: Values = {};
  const positionals: string[] = [];
  const take = (option: OptionSpec, inline: string | undefined, i: number): number => {
    if (option.value === undefined) {
      if (inline !== undefined) throw badValue(option, argv);
      values[option.name] = true;
      return i;
    }
    if (inline !== undefined) {
      values[option.name] = inline;
      return i;
    }
    const next = argv[i + 1];
    if (next === undefined || next.startsWith("-")) throw badValue(option, argv);
    values[option.name] = next;
    return i + 1;
  };
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i] as string;
    if (word === "--") {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (word.startsWith("--")) {
      const eq = word.indexOf("=");
      const name = eq === -1 ? word.slice(2) : word.slice(2, eq);
      const option = BY_NAME.get(name);
      if (option === undefined) throw unknownOption(`--${name}`, argv);
      i = take(option, eq === -1 ? undefined : word.slice(eq + 1), i);
    } else if (word.startsWith("-") && word.length > 1) {
      // A group of short options: flags, and at most one option with a value, last.
      for (let k = 1; k < word.length; k++) {
        const option = BY_SHORT.get(word[k] as string);
        if (option === undefined) throw unknownOption(`-${word[k]}`, argv);
        const rest = word.slice(k + 1);
        if (option.value !== undefined) {
          i = take(option, rest === "" ? undefined : rest, i);
          break;
        }
        take(option, undefined, i);
      }
    } else {
      positionals.push(word);
    }
  }
  return { values, positionals };
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
