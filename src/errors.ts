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
  /**
   * What went wrong, for programs: `--json` output and tests match this, never the message. Lower
   * snake_case, stable across releases (a new kind of error gets a new code). Without one, the
   * exit code's name is used (`failure`, `usage`, `login_required`, `interrupted`).
   */
  code?: string;
  hint?: string;
  /** Extra lines shown only with --verbose (protocol detail, never secrets). */
  detail?: string;
  cause?: unknown;
}

const CODE_OF_EXIT: Record<ExitCodeValue, string> = {
  0: "ok",
  1: "failure",
  2: "usage",
  3: "login_required",
  130: "interrupted",
};

/**
 * The one error type: a one-line message, an optional hint, an exit code and a stable code. It is
 * rendered in one place (src/cli/render.ts); anything else thrown is rendered as `internal`.
 */
export class CliError extends Error {
  readonly exitCode: ExitCodeValue;
  readonly code: string;
  readonly hint: string | undefined;
  readonly detail: string | undefined;

  constructor(message: string, options: CliErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "CliError";
    this.exitCode = options.exitCode ?? ExitCode.failure;
    this.code = options.code ?? CODE_OF_EXIT[this.exitCode];
    this.hint = options.hint;
    this.detail = options.detail;
  }
}

/** Not signed in, or the session ended: exit 3 with the hint to sign in. */
export function loginRequired(message: string, code = "login_required"): CliError {
  return new CliError(message, {
    exitCode: ExitCode.loginRequired,
    code,
    hint: "run `nix-cache-login login`",
  });
}
