/**
 * The shape of the command table (./table.ts): what parsing, help, completions and the man page
 * read. A file of its own, so that what is generated from the table imports no command.
 */
import type { Context } from "../context.ts";

export interface OptionSpec {
  name: string;
  short?: string;
  /** The value's name in help; options without one are flags. */
  value?: string;
  help: string;
  /** Options that cannot be combined with this one. */
  conflicts?: string[];
}

/** Option values as parsed: a string for options with a value, true for flags given. */
export type Values = Record<string, string | boolean | undefined>;

export interface CommandSpec {
  name: string;
  help: string;
  /** More for `COMMAND --help` and the man page, after the one-line help. */
  details?: string;
  options: OptionSpec[];
  /** Words allowed after the command (e.g. `timer install`), for parsing, help and completions. */
  args?: { name: string; choices: string[]; required: boolean };
  /** Example lines for --help and the man page. */
  examples?: string[];
  /** Runs the command; returns its exit code. Errors are thrown to ./run.ts, which renders them. */
  run(ctx: Context, values: Values): Promise<number>;
}

/** What completions and the man page are made from. */
export interface CommandTable {
  name: string;
  version: string;
  commands: CommandSpec[];
  globals: OptionSpec[];
}
