/**
 * argv -> command. The only place that renders errors and picks exit codes; nothing below calls
 * process.exit, so tests can call run() in-process as well as through the built binary.
 */
import { Command, CommanderError, Option } from "commander";
import { CONFIG_KEYS } from "./config/load.ts";
import type { Context } from "./context.ts";
import { CliError, ExitCode } from "./errors.ts";

declare const __VERSION__: string | undefined;
export const VERSION = typeof __VERSION__ === "string" ? __VERSION__ : "0.0.0-dev";

const HELP_FOOTER = `
Configuration (TOML), first found wins:
  --config PATH, $NIX_CACHE_LOGIN_CONFIG,
  $XDG_CONFIG_HOME/nix-cache-login/config.toml (~/.config when unset),
  /etc/nix-cache-login/config.toml
Keys: ${CONFIG_KEYS.join(", ")}
  (issuer, client_id and cache_host are required; client_secret_file means service-account mode)

Exit codes:
  0    success (status: the access token is valid and in the netrc)
  1    failure talking to the provider, the cache or the file system
       (doctor: at least one check found a problem)
  2    usage or configuration error
  3    login required: not signed in, session expired or revoked
  130  interrupted
`;

export type Deps = Omit<Context, "verbose" | "configFlag">;

interface GlobalOpts {
  config?: string;
  verbose?: boolean;
}

export async function run(argv: string[], deps: Deps): Promise<number> {
  let verboseFlag = argv.includes("--verbose") || argv.includes("-v");
  const program = new Command("nix-cache-login")
    .description("Keep an OpenID Connect access token for a protected Nix binary cache in your netrc.")
    .version(VERSION, "-V, --version")
    .exitOverride()
    .configureOutput({
      writeOut: (s) => deps.stdout.write(s),
      writeErr: (s) => deps.stderr.write(s),
      outputError: (s, write) => write(s.replace(/^error: /, "error: ")),
    })
    .showSuggestionAfterError(true)
    .addHelpText("after", HELP_FOOTER);

  let exitCode: number = ExitCode.ok;
  const withCommon = (cmd: Command) =>
    cmd
      .addOption(new Option("-c, --config <path>", "configuration file (overrides the search order)"))
      .addOption(new Option("-v, --verbose", "explain what happens (never prints tokens or secrets)"));
  const ctxFor = (cmd: Command): Context => {
    const local = cmd.opts<GlobalOpts>();
    const global = program.opts<GlobalOpts>();
    verboseFlag = local.verbose === true || global.verbose === true;
    return { ...deps, verbose: verboseFlag, configFlag: local.config ?? global.config };
  };
  withCommon(program);

  withCommon(program.command("login", { isDefault: true }))
    .description(
      "sign in with a browser, or a device code over SSH, and write the token to the netrc (the default)",
    )
    .addOption(
      new Option("--device", "sign in with a device code (RFC 8628), e.g. over SSH").conflicts([
        "port",
        "browserCommand",
      ]),
    )
    .option("--no-browser", "do not open a browser; only print the URL to open")
    .option(
      "--browser-command <cmd>",
      "open the URL with this command (%s is the URL, else it is appended); default $BROWSER",
    )
    .option(
      "--port <port>",
      "take the redirect on this port of 127.0.0.1 (default: callback_port, else a free port)",
    )
    .option("--timeout <duration>", "give up when the sign-in is not finished within this time", "5m")
    .action(async (opts: import("./commands/login.ts").LoginOptions, cmd: Command) => {
      const { login } = await import("./commands/login.ts");
      exitCode = await login(ctxFor(cmd), opts);
    });

  withCommon(program.command("refresh"))
    .description("renew the access token with the stored refresh token (no browser); for timers")
    .option(
      "--min-valid <duration>",
      "do nothing, without any request, if the token stays valid this long (e.g. 10m)",
    )
    .action(async (opts: { minValid?: string }, cmd: Command) => {
      const { refresh } = await import("./commands/refresh.ts");
      exitCode = await refresh(ctxFor(cmd), opts);
    });

  withCommon(program.command("service-account"))
    .description(
      "get a token with the client credentials grant (secret from client_secret_file); for servers",
    )
    .option(
      "--min-valid <duration>",
      "do nothing, without any request, if the token stays valid this long (e.g. 10m)",
    )
    .action(async (opts: { minValid?: string }, cmd: Command) => {
      const { serviceAccount } = await import("./commands/service-account.ts");
      exitCode = await serviceAccount(ctxFor(cmd), opts);
    });

  withCommon(program.command("status"))
    .description("show the configuration, the netrc entry and token expiry (local files only)")
    .option("--json", "print a JSON object on stdout")
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const { status } = await import("./commands/status.ts");
      exitCode = await status(ctxFor(cmd), opts);
    });

  withCommon(program.command("logout"))
    .description("revoke the session, remove the netrc entry and the stored tokens")
    .action(async (_opts: unknown, cmd: Command) => {
      const { logout } = await import("./commands/logout.ts");
      exitCode = await logout(ctxFor(cmd));
    });

  withCommon(program.command("doctor"))
    .description(
      "find why Nix does not use the token: config, token, netrc, Nix settings, cache (exit 1 on a problem)",
    )
    .option("--json", "print a JSON object on stdout")
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const { doctor } = await import("./commands/doctor.ts");
      exitCode = await doctor(ctxFor(cmd), opts);
    });

  try {
    await program.parseAsync(argv, { from: "user" });
    return exitCode;
  } catch (e) {
    return render(e, deps, verboseFlag);
  }
}

function render(e: unknown, deps: Deps, verbose: boolean): number {
  if (e instanceof CommanderError) {
    if (
      e.code === "commander.helpDisplayed" ||
      e.code === "commander.version" ||
      e.code === "commander.help"
    ) {
      return ExitCode.ok;
    }
    // Commander already printed the message.
    return ExitCode.usage;
  }
  if (deps.signal.aborted) {
    deps.stderr.write("error: interrupted\n");
    return ExitCode.interrupted;
  }
  if (e instanceof CliError) {
    deps.stderr.write(`error: ${e.message}\n`);
    if (e.hint !== undefined) deps.stderr.write(`hint: ${e.hint}\n`);
    if (verbose && e.detail !== undefined) deps.stderr.write(`verbose: ${e.detail}\n`);
    if (verbose && e.cause !== undefined) deps.stderr.write(`verbose: cause: ${describeCause(e.cause)}\n`);
    return e.exitCode;
  }
  const err = e as NodeJS.ErrnoException;
  deps.stderr.write(`error: ${err.message ?? String(e)}\n`);
  if (verbose && err.stack !== undefined) deps.stderr.write(`${err.stack}\n`);
  else deps.stderr.write("hint: run again with --verbose for details\n");
  return ExitCode.failure;
}

function describeCause(cause: unknown): string {
  const parts: string[] = [];
  for (let cur = cause, depth = 0; cur !== undefined && cur !== null && depth < 5; depth++) {
    const c = cur as { name?: string; message?: string; code?: string; cause?: unknown };
    parts.push([c.name, c.code, c.message].filter((x) => x !== undefined && x !== "").join(" "));
    cur = c.cause;
  }
  return parts.join(" <- ");
}
