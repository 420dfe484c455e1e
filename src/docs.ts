/**
 * Where each kind of error is explained: the page of docs/ (in the source tree and in the npm
 * package) for an error's stable code. The text rendering names it under the hint; the codes are
 * also listed in docs/troubleshooting.md ("Error codes"), and test/unit/docs.test.ts checks that
 * every page and section named here exists and that every code is listed there.
 */

export const TROUBLESHOOTING = "docs/troubleshooting.md";

const CONFIGURATION = "docs/configuration.md";
const PROVIDER = "docs/provider-setup.md#register-the-client-in-keycloak";
const LOGIN = "docs/commands.md#login-the-default-command";
const FILES = "docs/security.md#files-and-permissions";
const WRITES = "docs/security.md#how-files-are-written";
const ERRORS = `${TROUBLESHOOTING}#error-codes`;

const PAGE_OF_CODE: Record<string, string> = {
  config_invalid: CONFIGURATION,
  config_not_found: CONFIGURATION,
  config_syntax: CONFIGURATION,
  config_unreadable: CONFIGURATION,
  variable_not_set: CONFIGURATION,
  path_not_absolute: CONFIGURATION,
  not_service_account: CONFIGURATION,
  not_user_config: CONFIGURATION,
  client_rejected: PROVIDER,
  client_key_invalid: PROVIDER,
  client_key_unsupported: PROVIDER,
  credential_file_empty: PROVIDER,
  provider_no_device_flow: PROVIDER,
  sign_in_timeout: LOGIN,
  sign_in_denied: LOGIN,
  sign_in_rejected: LOGIN,
  device_code_expired: LOGIN,
  port_in_use: LOGIN,
  port_not_allowed: LOGIN,
  listen_failed: LOGIN,
  bad_port: LOGIN,
  bad_browser_command: LOGIN,
  netrc_syntax: WRITES,
  netrc_io: FILES,
  token_too_long: WRITES,
  state_corrupt: FILES,
  state_unreadable: FILES,
  home_not_set: FILES,
  session_expired: ERRORS,
  not_signed_in: ERRORS,
  login_required: ERRORS,
  issuer_mismatch: ERRORS,
  provider_unreachable: ERRORS,
  provider_request_failed: ERRORS,
  provider_refused: ERRORS,
  provider_answer_invalid: ERRORS,
  provider_answer_unexpected: ERRORS,
  provider_no_authorization_endpoint: ERRORS,
  provider_no_revocation: ERRORS,
  provider_logout_failed: ERRORS,
};

/** The page that explains errors with this code, if one does. */
export function docPage(code: string): string | undefined {
  return Object.hasOwn(PAGE_OF_CODE, code) ? PAGE_OF_CODE[code] : undefined;
}

/** Every code with a page, for the test that keeps this table and docs/ in step. */
export const DOCUMENTED_CODES: readonly string[] = Object.keys(PAGE_OF_CODE);
