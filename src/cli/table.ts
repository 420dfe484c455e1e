/**
 * The one table of commands and options. Parsing (./parse.ts), help (./help.ts) and running
 * (./run.ts) are made from it, and so can completions and the man page be: a new command is added
 * here and nowhere else.
 *
 * Each command's module is imported when it runs, so the others are never initialised, and the
 * third-party libraries they use load only from within them (see scripts/build.mjs).
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
  options: OptionSpec[];
  /** Runs the command; returns its exit code. Errors are thrown to ./run.ts, which renders them. */
  run(ctx: Context, values: Values): Promise<number>;
}

export const NAME = "nix-cache-login";

export const str = (v: string | boolean | undefined): string | undefined =>
  typeof v === "string" ? v : undefined;
export const bool = (v: string | boolean | undefined): true | undefined => (v === true ? true : undefined);

const MIN_VALID: OptionSpec = {
  name: "min-valid",
  value: "duration",
  help: "do nothing, without any request, if the token stays valid this long (e.g. 10m)",
};
const JSON_OUTPUT: OptionSpec = { name: "json", help: "print a JSON object on stdout" };

export const GLOBAL_OPTIONS: OptionSpec[] = [
  { name: "config", short: "c", value: "path", help: "configuration file (overrides the search order)" },
  { name: "verbose", short: "v", help: "explain what happens (never prints tokens or secrets)" },
  { name: "help", short: "h", help: "show help (for a command: nix-cache-login COMMAND --help)" },
  { name: "version", short: "V", help: "print the version" },
];

export const COMMANDS: CommandSpec[] = [
  {
    name: "login",
    help: "sign in with a browser, or a device code over SSH, and write the token to the netrc (the default)",
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
    ],
    run: async (ctx, v) =>
      (await import("../commands/login.ts")).login(ctx, {
        device: bool(v.device),
        browser: v["no-browser"] === true ? false : undefined,
        browserCommand: str(v["browser-command"]),
        port: str(v.port),
        timeout: str(v.timeout),
      }),
  },
  {
    name: "refresh",
    help: "renew the access token with the stored refresh token (no browser); for timers",
    options: [MIN_VALID],
    run: async (ctx, v) =>
      (await import("../commands/refresh.ts")).refresh(ctx, { minValid: str(v["min-valid"]) }),
  },
  {
    name: "service-account",
    help: "get a token with the client credentials grant (client_secret_file or client_key_file); for servers",
    options: [MIN_VALID],
    run: async (ctx, v) =>
      (await import("../commands/service-account.ts")).serviceAccount(ctx, { minValid: str(v["min-valid"]) }),
  },
  {
    name: "status",
    help: "show the configuration, the netrc entry and token expiry (local files only)",
    options: [JSON_OUTPUT],
    run: async (ctx, v) => (await import("../commands/status.ts")).status(ctx, { json: bool(v.json) }),
  },
  {
    name: "logout",
    help: "revoke the session, remove the netrc entry and the stored tokens",
    options: [],
    run: async (ctx) => (await import("../commands/logout.ts")).logout(ctx),
  },
  {
    name: "doctor",
    help: "find why Nix does not use the token: config, token, netrc, Nix settings, cache (exit 1 on a problem)",
    options: [JSON_OUTPUT],
    run: async (ctx, v) => (await import("../commands/doctor.ts")).doctor(ctx, { json: bool(v.json) }),
  },
];

export const DEFAULT_COMMAND = "login";

/** Every option of every command (a shared one more than once). */
export const ALL_OPTIONS = [...GLOBAL_OPTIONS, ...COMMANDS.flatMap((c) => c.options)];

export function findCommand(name: string | undefined): CommandSpec | undefined {
  return COMMANDS.find((c) => c.name === name);
}
