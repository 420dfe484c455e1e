/**
 * argv -> command. Arguments are parsed by Node's own parser (node:util parseArgs); the commands,
 * their options and the help text come from one table below.
 *
 * `status`, `--help`, `--version` and a `refresh --min-valid` that finds the token fresh run from
 * this module's light imports. Everything that talks to the network is loaded on demand from
 * ./cold.ts (a bundle of its own), so the timers' common case starts almost as fast as Node.
 *
 * Nothing below calls process.exit, so tests can call run() in-process as well as through the
 * built binary.
 */
import type { ColdCommand } from "./cold.ts";
import { status } from "./commands/status.ts";
import { CONFIG_KEYS } from "./config/load.ts";
import { withFields, type Context } from "./context.ts";
import { CliError, ExitCode } from "./errors.ts";
import { renderError } from "./render.ts";
import { beginRenewal } from "./session.ts";
import { closest } from "./suggest.ts";
import { EXTRA_COMMANDS, extraColdCommand, type CommandTable } from "./commands/table.ts";

declare const __VERSION__: string | undefined;
const VERSION = typeof __VERSION__ === "string" ? __VERSION__ : "0.0.0-dev";
const NAME = "nix-cache-login";

export interface OptionSpec {
  name: string;
  short?: string;
  /** The value's name in help; options without one are flags. */
  value?: string;
  help: string;
  /** Options that cannot be combined with this one. */
  conflicts?: string[];
}

export interface CommandSpec {
  name: string;
  help: string;
  /** More for `COMMAND --help`, after the one-line help. */
  details?: string;
  options: OptionSpec[];
  /** Words allowed after the command (e.g. `timer install`), for parsing, help and completions. */
  args?: { name: string; choices: string[]; required: boolean };
  /** Example lines for --help and the man page. */
  examples?: string[];
}

const MIN_VALID: OptionSpec = {
  name: "min-valid",
  value: "duration",
  help: "do nothing, without any request, if the token stays valid this long (with a unit: 30s, 10m, 1h) and every cache host's entry holds it",
};
const JSON_OUTPUT: OptionSpec = { name: "json", help: "print a JSON object on stdout" };
const JSON_RESULT: OptionSpec = {
  name: "json",
  help: 'print what was done as one JSON object on stdout (errors as {"error": {...}})',
};
const QUIET: OptionSpec = {
  name: "quiet",
  short: "q",
  help: "print nothing on success (warnings, errors and sign-in prompts still go to stderr)",
};

const GLOBAL_OPTIONS: OptionSpec[] = [
  { name: "config", short: "c", value: "path", help: "configuration file (overrides the search order)" },
  { name: "verbose", short: "v", help: "explain what happens (never prints tokens or secrets)" },
  { name: "help", short: "h", help: "show help (for a command: nix-cache-login COMMAND --help)" },
  { name: "version", short: "V", help: "print the version" },
];

const COMMANDS: CommandSpec[] = [
  {
    name: "login",
    help: "sign in with a browser, or a device code over SSH, and write the token to the netrc (the default)",
    details:
      "When stdin is a terminal, the browser sign-in also takes the address the browser ends on, pasted into the terminal: for a browser that cannot reach this machine (over SSH, open the URL on your laptop and paste back where it lands). The redirect to 127.0.0.1 and the pasted address race; the first with the right state wins.",
    options: [
      {
        name: "device",
        help: "sign in with a device code (RFC 8628), e.g. over SSH",
        conflicts: ["port", "browser-command"],
      },
      { name: "no-browser", help: "do not open a browser; only print the URL to open" },
      {
        name: "browser-command",
        value: "cmd",
        help: "open the URL with this command (%s is the URL, else it is appended); default $BROWSER",
      },
      {
        name: "port",
        value: "port",
        help: "take the redirect on this port of 127.0.0.1 (default: callback_port, else a free port)",
      },
      {
        name: "timeout",
        value: "duration",
        help: "give up when the sign-in is not finished within this time (default: 5m)",
      },
      JSON_RESULT,
      QUIET,
    ],
  },
  {
    name: "refresh",
    help: "renew the access token with the stored refresh token (no browser); for timers",
    options: [MIN_VALID, JSON_RESULT, QUIET],
  },
  {
    name: "service-account",
    help: "get a token with the client credentials grant (client_secret_file or client_key_file); for servers",
    options: [MIN_VALID, JSON_RESULT, QUIET],
  },
  {
    name: "status",
    help: "show the configuration, the netrc entry and token expiry (local files only)",
    options: [JSON_OUTPUT],
  },
  {
    name: "logout",
    help: "revoke the session, remove the netrc entry and the stored tokens",
    options: [JSON_RESULT, QUIET],
  },
  {
    name: "doctor",
    help: "find why Nix does not use the token: config, token, netrc, Nix settings, cache (exit 1 on a problem)",
    options: [JSON_OUTPUT],
  },
  ...EXTRA_COMMANDS,
];
const DEFAULT_COMMAND = "login";

/** The command table for what is generated from it (completions, man page). */
export function commandTable(): CommandTable {
  return { name: NAME, version: VERSION, commands: COMMANDS, globals: GLOBAL_OPTIONS, footer: helpFooter() };
}
/** Every option of every command (a shared one more than once). */
const ALL_OPTIONS = [...GLOBAL_OPTIONS, ...COMMANDS.flatMap((c) => c.options)];

const helpFooter = () => `Configuration (TOML), first found wins:
  --config PATH, $NIX_CACHE_LOGIN_CONFIG,
  $XDG_CONFIG_HOME/nix-cache-login/config.toml (~/.config when unset),
  /etc/nix-cache-login/config.toml
Keys: ${column(CONFIG_KEYS.join(", "), 6)}
  (issuer, client_id and cache_host are required; cache_host may be a list of hosts, each
  getting the token; client_secret_file or client_key_file means service-account mode;
  token_endpoint_auth_method: client_secret_basic (default), client_secret_post, or
  private_key_jwt with client_key_file)
Example (\`${NAME} init --issuer URL --client-id ID --cache-host HOST\` writes one):
  issuer = "https://sso.example.org/realms/nix"
  client_id = "nix-cache"
  cache_host = "cache.example.org"

Exit codes:
  0    success (status: the access token is valid and in the netrc)
  1    failure talking to the provider, the cache or the file system
       (doctor: at least one check found a problem)
  2    usage or configuration error
  3    login required: not signed in, session expired or revoked
  130  interrupted
`;

/** Word-wraps `text` into a column starting at `indent`, lines at most `width` wide. */
function column(text: string, indent: number, width = 100): string {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line !== "" && indent + line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line === "" ? word : `${line} ${word}`;
  }
  lines.push(line);
  return lines.join(`\n${" ".repeat(indent)}`);
}

function table(rows: [string, string][]): string {
  const width = Math.max(...rows.map(([left]) => left.length)) + 2;
  return rows.map(([left, right]) => `  ${left.padEnd(width)}${column(right, width + 2)}\n`).join("");
}

function optionRows(options: OptionSpec[]): [string, string][] {
  return options.map((o) => [
    `${o.short === undefined ? "" : `-${o.short}, `}--${o.name}${o.value === undefined ? "" : ` <${o.value}>`}`,
    o.help,
  ]);
}

export function helpText(command?: string): string {
  const spec = COMMANDS.find((c) => c.name === command);
  if (spec === undefined) {
    return [
      `Usage: ${NAME} [COMMAND] [OPTIONS]\n\n`,
      "Keep an OpenID Connect access token for a protected Nix binary cache in your netrc.\n\n",
      "Commands:\n",
      table(COMMANDS.map((c) => [c.name, c.help])),
      "\nOptions:\n",
      table(optionRows(GLOBAL_OPTIONS)),
      "\n",
      helpFooter(),
    ].join("");
  }
  const args = spec.args === undefined ? "" : ` ${spec.args.choices.join("|")}`;
  return [
    `Usage: ${NAME} ${spec.name}${args}${spec.options.length > 0 ? " [OPTIONS]" : ""}\n\n`,
    `${column(`${spec.help.charAt(0).toUpperCase()}${spec.help.slice(1)}.`, 0)}\n\n`,
    spec.details === undefined ? "" : `${column(spec.details, 0)}\n\n`,
    "Options:\n",
    table(optionRows([...spec.options, ...GLOBAL_OPTIONS])),
    spec.examples === undefined ? "" : `\nExamples:\n${spec.examples.map((e) => `  ${e}\n`).join("")}`,
  ].join("");
}

type Values = Record<string, string | boolean | undefined>;

type Parsed =
  | { kind: "help"; command: string | undefined }
  | { kind: "version" }
  | { kind: "run"; command: string; values: Values };

function usage(message: string, command?: string): CliError {
  return new CliError(message, {
    exitCode: ExitCode.usage,
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
      spec?.name,
    );
  }
  if (err.code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE" && option !== undefined) {
    const flag = PARSE_OPTIONS[option.replace(/^-+/, "")]?.type === "boolean";
    return usage(
      flag
        ? `option ${option} takes no value`
        : `option ${option} needs a value (write ${option}=VALUE for one that starts with "-")`,
      spec?.name,
    );
  }
  return usage((err.message.split(/\.(\s|$)/)[0] ?? err.message).trim(), spec?.name);
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
    if (rest.length > 1) throw usage(`unexpected argument ${JSON.stringify(rest[1])}`);
    if (rest[0] !== undefined && !COMMANDS.some((c) => c.name === rest[0])) throw unknownCommand(rest[0]);
    return { kind: "help", command: rest[0] };
  }
  const name = first ?? DEFAULT_COMMAND;
  const spec = COMMANDS.find((c) => c.name === name);
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
        spec.name,
      );
    }
    values[""] = word;
  } else if (args?.required === true && rest.length === 0) {
    throw usage(`${spec.name} needs a ${args.name}: ${args.choices.join(", ")}`, spec.name);
  } else if (rest.length > 0) {
    throw usage(`unexpected argument ${JSON.stringify(rest[args === undefined ? 0 : 1])}`, spec.name);
  }
  const allowed = new Map([...GLOBAL_OPTIONS, ...spec.options].map((o) => [o.name, o]));
  for (const key of Object.keys(values)) {
    if (key === "") continue;
    const option = allowed.get(key);
    if (option === undefined) throw usage(`${spec.name} has no option --${key}`, spec.name);
    for (const other of option.conflicts ?? []) {
      if (values[other] !== undefined) {
        throw usage(`--${key} cannot be used with --${other}`, spec.name);
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
  );
}

export type Deps = Omit<Context, "verbose" | "configFlag">;

const str = (v: string | boolean | undefined) => (typeof v === "string" ? v : undefined);
const bool = (v: string | boolean | undefined) => (v === true ? true : undefined);

function coldCommand(command: string, v: Values): ColdCommand {
  switch (command) {
    case "login":
      return {
        name: "login",
        opts: {
          device: bool(v.device),
          browser: v["no-browser"] === true ? false : undefined,
          browserCommand: str(v["browser-command"]),
          port: str(v.port),
          timeout: str(v.timeout),
        },
      };
    case "refresh":
    case "service-account":
      return { name: command, opts: { minValid: str(v["min-valid"]) } };
    case "logout":
      return { name: "logout" };
    case "doctor":
      return { name: "doctor", opts: { json: bool(v.json) } };
  }
  const extra = extraColdCommand(command, v, commandTable());
  if (extra !== undefined) return extra;
  throw new Error(`no such command: ${command}`);
}

/**
 * `--min-valid` settled from the files alone, before the network code is loaded. Its stderr is
 * held back and dropped when a renewal follows: that command says the same things again.
 */
async function freshEnough(ctx: Context, command: "refresh" | "service-account", minValid: string) {
  const held: string[] = [];
  const quiet = withFields(ctx, { stderr: { write: (text: string) => held.push(text) } });
  try {
    const fresh =
      (await beginRenewal(quiet, { minValid }, command === "refresh" ? "refresh" : "client-credentials")) ===
      "fresh";
    if (fresh) for (const text of held) ctx.stderr.write(text);
    return fresh;
  } catch (e) {
    for (const text of held) ctx.stderr.write(text);
    throw e;
  }
}

export async function run(argv: string[], deps: Deps): Promise<number> {
  let verbose = argv.includes("--verbose") || argv.includes("-v");
  // Also for errors found while parsing: a script that asked for JSON gets JSON.
  const json = argv.includes("--json");
  try {
    const parsed = parseCommandLine(argv);
    if (parsed.kind === "help") {
      deps.stdout.write(helpText(parsed.command));
      return ExitCode.ok;
    }
    if (parsed.kind === "version") {
      deps.stdout.write(`${VERSION}\n`);
      return ExitCode.ok;
    }
    const { command, values } = parsed;
    verbose = values.verbose === true;
    const result: Record<string, unknown> = { command };
    const ctx = withFields(deps, {
      verbose,
      configFlag: str(values.config),
      quiet: bool(values.quiet),
      json: bool(values.json),
      result,
    });
    if (command === "status") return await status(ctx, { json: bool(values.json) });
    const code = await runRenewalOrCold(ctx, command, values);
    if (values.json === true && command !== "doctor" && Object.keys(result).length > 1) {
      deps.stdout.write(`${JSON.stringify(result)}\n`);
    }
    return code;
  } catch (e) {
    return renderError(e, deps, verbose, json);
  }
}

async function runRenewalOrCold(ctx: Context, command: string, values: Values): Promise<number> {
  const minValid = str(values["min-valid"]);
  if ((command === "refresh" || command === "service-account") && minValid !== undefined) {
    if (await freshEnough(ctx, command, minValid)) return ExitCode.ok;
  }
  const { runCommand } = await import("./cold.ts");
  return await runCommand(ctx, coldCommand(command, values));
}
