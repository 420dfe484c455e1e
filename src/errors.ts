/** Exit codes are a contract with timers and scripts; see docs/commands.md "Exit codes". */
export const ExitCode = {
  ok: 0,
  failure: 1,
  usage: 2,
  loginRequired: 3,
  interrupted: 130,
} as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

export interface CliErrorOptions {
  exitCode?: ExitCodeValue;
  hint?: string;
  /** Extra lines shown only with --verbose (protocol detail, never secrets). */
  detail?: string;
  cause?: unknown;
  /**
   * Lines listed under the message, one each (every problem of a configuration): the message is
   * one line, so a line break in a value it quotes cannot pass for a line of its own; the list is
   * how a message spans lines. `message` holds them too, indented, as it always has.
   */
  items?: readonly string[];
}

/**
 * The one error type: a stable code, a one-line message, an optional hint and an exit code. It is
 * rendered in one place (src/cli/render.ts); anything else thrown is rendered as `internal`.
 *
 * The code says what went wrong, for programs: `--json` output and tests match it, never the
 * message. Lower snake_case, stable across releases, written once in the tree (a new kind of error
 * gets a new code); docs/errors.md lists every one with its hint, and test/unit/error-codes.test.ts
 * holds the two together.
 */
export class CliError extends Error {
  readonly exitCode: ExitCodeValue;
  readonly code: string;
  readonly hint: string | undefined;
  readonly detail: string | undefined;
  /** The message's first line, without the items (see CliErrorOptions.items). */
  readonly headline: string;
  readonly items: readonly string[] | undefined;

  constructor(code: string, message: string, options: CliErrorOptions = {}) {
    const items = options.items;
    super(
      items === undefined ? message : `${message}\n  ${items.join("\n  ")}`,
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.headline = message;
    this.items = items;
    this.name = "CliError";
    this.exitCode = options.exitCode ?? ExitCode.failure;
    this.code = code;
    this.hint = options.hint;
    this.detail = options.detail;
  }
}

/** Not signed in, or the session ended: exit 3 with the hint to sign in. */
export function loginRequired(code: string, message: string): CliError {
  return new CliError(code, message, {
    exitCode: ExitCode.loginRequired,
    hint: "run `nix-cache-login login`",
  });
}
