/**
 * The one table of commands and options. Parsing (./parse.ts), help (./help.ts) and running
 * (./run.ts) are made from it, and so can completions and the man page be: a new command is added
 * here and nowhere else.
 *
 * Each command's module is imported when it runs, so the others are never initialised, and the
 * third-party libraries they use load only from within them (see scripts/build.mjs).
 */
import type { CommandSpec, CommandTable, OptionSpec } from "./spec.ts";

export const NAME = "nix-cache-login";

declare const __VERSION__: string | undefined;
export const VERSION = typeof __VERSION__ === "string" ? __VERSION__ : "0.0.0-dev";

export const str = (v: string | boolean | undefined): string | undefined =>
  typeof v === "string" ? v : undefined;
export const bool = (v: string | boolean | undefined): true | undefined => (v === true ? true : undefined);

const MIN_VALID: OptionSpec = {
  name: "min-valid",
  value: "duration",
  help: "do nothing, without any request, if the token stays valid this long (with a unit: 30s, 10m, 1h) and every cache host's entry holds it",
};
const DRY_RUN: OptionSpec = {
  name: "dry-run",
  help: "only load and check the configuration (and a service account's secret or key file) as a run would, and say so; nothing is sent or written (`timer status` runs the unit's command this way)",
};
const JSON_OUTPUT: OptionSpec = { name: "json", help: "print a JSON object on stdout" };
/** --json of the commands that do something: run() prints what they recorded (ctx.result). */
export const JSON_RESULT: OptionSpec = {
  name: "json",
  help: 'print what was done as one JSON object on stdout (errors as {"error": {...}})',
};
const QUIET: OptionSpec = {
  name: "quiet",
  short: "q",
  help: "print nothing on success (warnings, errors and sign-in prompts still go to stderr)",
};
const QUIET_SHORT: OptionSpec = { name: "quiet", short: "q", help: "print nothing on success" };

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
    options: [
      MIN_VALID,
      {
        name: "if-signed-in",
        help: "with no sign-in at all (no token state: never signed in, or logged out), exit 3 without a word; for a timer that runs for every user of a machine",
      },
      DRY_RUN,
      JSON_RESULT,
      QUIET,
    ],
    run: async (ctx, v) =>
      (await import("../commands/refresh.ts")).refresh(ctx, {
        minValid: str(v["min-valid"]),
        dryRun: bool(v["dry-run"]),
        ifSignedIn: bool(v["if-signed-in"]),
      }),
  },
  {
    name: "service-account",
    help: "get a token with the client credentials grant (client_secret_file or client_key_file); for servers",
    options: [MIN_VALID, DRY_RUN, JSON_RESULT, QUIET],
    run: async (ctx, v) =>
      (await import("../commands/service-account.ts")).serviceAccount(ctx, {
        minValid: str(v["min-valid"]),
        dryRun: bool(v["dry-run"]),
      }),
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
    options: [JSON_RESULT, QUIET],
    run: async (ctx) => (await import("../commands/logout.ts")).logout(ctx),
  },
  {
    name: "doctor",
    help: "find why Nix does not use the token: config, token, netrc, Nix settings, cache (exit 1 on a problem)",
    options: [JSON_OUTPUT],
    run: async (ctx, v) => (await import("../commands/doctor.ts")).doctor(ctx, { json: bool(v.json) }),
  },
  {
    name: "init",
    help: "write a configuration file, after checking that the issuer answers with its discovery document and (for a user sign-in) knows the client",
    options: [
      {
        name: "issuer",
        value: "url",
        help: "the OpenID Connect issuer, e.g. https://sso.example.org/realms/nix",
      },
      { name: "client-id", value: "id", help: "the client registered for nix-cache-login" },
      {
        name: "cache-host",
        value: "host",
        help: "the binary cache's host name, e.g. cache.example.org (several: comma-separated)",
      },
      {
        name: "cache-url",
        value: "url",
        help: "the cache's base URL, where it is not https://HOST (`doctor` asks it; several: comma-separated, one per host)",
      },
      {
        name: "client-secret-file",
        value: "path",
        help: "a file with the client secret: a service-account configuration",
      },
      {
        name: "netrc-path",
        value: "path",
        help: "the netrc to write the token to (default: $XDG_CONFIG_HOME/nix/netrc)",
      },
      { name: "force", help: "replace an existing configuration file" },
      QUIET_SHORT,
    ],
    examples: [
      "nix-cache-login init --issuer https://sso.example.org/realms/nix \\",
      "    --client-id nix-cache --cache-host cache.example.org",
    ],
    run: async (ctx, v) =>
      (await import("../commands/init.ts")).init(ctx, {
        issuer: str(v.issuer),
        clientId: str(v["client-id"]),
        cacheHost: str(v["cache-host"]),
        cacheUrl: str(v["cache-url"]),
        clientSecretFile: str(v["client-secret-file"]),
        netrcPath: str(v["netrc-path"]),
        force: v.force === true,
      }),
  },
  {
    name: "timer",
    help: "install, remove or show a timer that runs `refresh --min-valid` (systemd user units, or launchd on macOS)",
    args: { name: "action", choices: ["install", "remove", "status"], required: true },
    options: [
      {
        name: "interval",
        value: "duration",
        help: "run every this long (default: 2m; must divide a minute, an hour or a day)",
      },
      {
        name: "min-valid",
        value: "duration",
        help: "renew when the token expires within this time (default: 4m; longer than the interval)",
      },
      {
        name: "system",
        help: "as root: system units that run `service-account` for a server (config in /etc/nix-cache-login)",
      },
      QUIET_SHORT,
    ],
    examples: [
      "nix-cache-login timer install",
      "nix-cache-login timer status",
      "nix-cache-login timer remove",
    ],
    run: async (ctx, v) =>
      (await import("../commands/timer.ts")).timer(ctx, {
        action: str(v[""]) as "install" | "remove" | "status",
        interval: str(v.interval),
        minValid: str(v["min-valid"]),
        system: v.system === true,
      }),
  },
  {
    name: "completion",
    help: "print a shell completion script (bash, zsh or fish)",
    args: { name: "shell", choices: ["bash", "zsh", "fish"], required: true },
    options: [],
    examples: [
      "nix-cache-login completion bash > ~/.local/share/bash-completion/completions/nix-cache-login",
      "nix-cache-login completion fish > ~/.config/fish/completions/nix-cache-login.fish",
    ],
    run: async (ctx, v) => {
      const { completionScript } = await import("./completion.ts");
      ctx.stdout.write(completionScript(str(v[""]) as "bash" | "zsh" | "fish", commandTable()));
      return 0;
    },
  },
];

/** The command table for what is generated from it (completions, man page). */
export function commandTable(): CommandTable {
  return { name: NAME, version: VERSION, commands: COMMANDS, globals: GLOBAL_OPTIONS };
}

export const DEFAULT_COMMAND = "login";

/** Every option of every command (a shared one more than once). */
export const ALL_OPTIONS = [...GLOBAL_OPTIONS, ...COMMANDS.flatMap((c) => c.options)];

export function findCommand(name: string | undefined): CommandSpec | undefined {
  return COMMANDS.find((c) => c.name === name);
}
