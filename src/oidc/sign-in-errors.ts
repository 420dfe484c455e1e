/**
 * How a sign-in ends without tokens, whichever flow ran it (the browser's redirect, or the device
 * flow's polling): one code for each way, so that a script reading `--json` need not know the flow.
 */
import { CliError, type CliErrorOptions } from "../errors.ts";

/** The user, or the provider's policy, said no (OAuth `access_denied`). */
export function signInDenied(message: string, options?: CliErrorOptions): CliError {
  return new CliError("sign_in_denied", message, options);
}

/** The device code ran out before the sign-in was approved (RFC 8628 `expired_token`, or its expires_in). */
export function deviceCodeExpired(message: string, options?: CliErrorOptions): CliError {
  return new CliError("device_code_expired", message, options);
}

/** --timeout passed before the sign-in was finished. */
export function signInTimedOut(message: string, options?: CliErrorOptions): CliError {
  return new CliError("sign_in_timeout", message, options);
}
