import type { Env } from "./config/paths.ts";

/** The nondeterministic edges a command touches; everything else (files, HTTP) is real. */
export interface Context {
  env: Env;
  stdout: { write(text: string): unknown; isTTY?: boolean };
  stderr: { write(text: string): unknown; isTTY?: boolean };
  /** Read only by `login`, for an address pasted on a terminal. */
  stdin?: (NodeJS.ReadableStream & { isTTY?: boolean }) | undefined;
  now: () => Date;
  signal: AbortSignal;
  verbose: boolean;
  configFlag: string | undefined;
}

export function say(ctx: Context, line: string): void {
  ctx.stderr.write(`${line}\n`);
}

export function verbose(ctx: Context): (line: string) => void {
  return (line) => {
    if (ctx.verbose) ctx.stderr.write(`verbose: ${line}\n`);
  };
}

export function warn(ctx: Context, line: string): void {
  ctx.stderr.write(`warning: ${line}\n`);
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
