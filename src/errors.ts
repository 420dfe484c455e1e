/** Exit codes are a contract with timers and scripts; see README "Exit codes". */
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
  /** A stable name for scripts (`--json` errors); by default one per exit code. */
  code?: string;
}

const DEFAULT_CODES: Record<number, string> = {
  0: "ok",
  1: "failure",
  2: "usage",
  3: "login_required",
  130: "interrupted",
};

/** The one error type the CLI renders: a one-line message, an optional hint and an exit code. */
export class CliError extends Error {
  readonly exitCode: ExitCodeValue;
  readonly hint: string | undefined;
  readonly detail: string | undefined;
  readonly code: string;

  constructor(message: string, options: CliErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "CliError";
    this.exitCode = options.exitCode ?? ExitCode.failure;
    this.hint = options.hint;
    this.detail = options.detail;
    this.code = options.code ?? DEFAULT_CODES[this.exitCode] ?? "failure";
  }
}

export function loginRequired(message: string): CliError {
  return new CliError(message, { exitCode: ExitCode.loginRequired, hint: "run `nix-cache-login login`" });
}
