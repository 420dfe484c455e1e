import type { Env } from "./os/env.ts";
import { oneLine } from "./text.ts";

/** The nondeterministic edges a command touches; everything else (files, HTTP) is real. */
export interface Context {
  env: Env;
  /**
   * $NIX_CACHE_LOGIN_LAUNCHER: the Nix wrapper names itself there for `timer install`
   * (./commands/timer.ts). ../main.ts takes it out of the environment, so that no program we
   * start (a browser, and whatever it starts later) inherits it: a nix-cache-login installed
   * another way and started from there would take the wrapper for its own.
   */
  launcher?: string | undefined;
  stdout: { write(text: string): unknown; isTTY?: boolean };
  stderr: { write(text: string): unknown; isTTY?: boolean };
  /** Read only by `login`, for an address pasted on a terminal. */
  stdin?: (NodeJS.ReadableStream & { isTTY?: boolean }) | undefined;
  now: () => Date;
  signal: AbortSignal;
  verbose: boolean;
  configFlag: string | undefined;
  /** --quiet: no progress or result lines on success (warnings, errors and sign-in prompts stay). */
  quiet?: boolean | undefined;
  /** --json: the command's result goes to stdout as one object (see ./core/result.ts). */
  json?: boolean | undefined;
  /** What the command did, filled in by it, printed by --json. */
  result?: Record<string, unknown> | undefined;
  /**
   * Says that a request is slow ("waiting for sso.example.org ..."), once per request that takes
   * longer than a second, so nobody on a terminal stares at nothing. Set by ../cli/run.ts.
   */
  onSlowRequest?: ((host: string) => void) | undefined;
}

/*
 * Each of these writes one line, and its values come from the configuration, the environment and
 * the command line (an issuer, a client_id, a path): oneLine (./text.ts) keeps an ESC or a line
 * break in one of them off the terminal.
 */

/** A progress or result line on stderr; none with --quiet or --json. */
export function say(ctx: Context, line: string): void {
  if (ctx.quiet === true || ctx.json === true) return;
  ctx.stderr.write(`${oneLine(line)}\n`);
}

/** A line the user must see to go on (where to sign in), even with --quiet. */
export function prompt(ctx: Context, line: string): void {
  ctx.stderr.write(`${oneLine(line)}\n`);
}

/** Records a field of the command's result (for --json). */
export function record(ctx: Context, fields: Record<string, unknown>): void {
  if (ctx.result !== undefined) Object.assign(ctx.result, fields);
}

export function verbose(ctx: Context): (line: string) => void {
  return (line) => {
    if (ctx.verbose) ctx.stderr.write(`verbose: ${oneLine(line)}\n`);
  };
}

export function warn(ctx: Context, line: string): void {
  ctx.stderr.write(`warning: ${oneLine(line)}\n`);
}

/**
 * `base` with some fields replaced. Not a spread, which would read every getter: `signal` is one
 * (see main.ts), set up only when a command uses it.
 */
export function withFields<T extends object>(base: T, fields: Partial<Context>): Context {
  return Object.defineProperties(
    {},
    { ...Object.getOwnPropertyDescriptors(base), ...Object.getOwnPropertyDescriptors(fields) },
  ) as Context;
}
