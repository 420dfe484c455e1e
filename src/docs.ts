/**
 * Where each kind of error is explained: the page of docs/ (in the source tree and in the npm
 * package) for an error's stable code, which the text rendering names on a `see:` line under the
 * hint. By the code's family, so a new code lands on its topic's page; docs/errors.md lists every
 * code, and test/unit/docs.test.ts checks that each of them gets a page that exists, or none for
 * the command-line codes, whose hint names `--help` or the form to write.
 */

export const TROUBLESHOOTING = "docs/troubleshooting.md";

/** First match wins. */
const PAGES: [RegExp, string | undefined][] = [
  // A mistyped command line: the hint names `--help`, or says how to write the value.
  [
    /^(unknown_command|unknown_option|bad_option_value|conflicting_options|missing_argument|bad_argument|bad_duration|interrupted|internal)$/,
    undefined,
  ],
  [
    /^(sign_in_|device_code_|port_|listen_failed$|bad_port$|bad_browser_command$)/,
    "docs/commands.md#login-the-default-command",
  ],
  [/^(timer_|system_|interval_|min_valid_|unit_|script_path_)/, "docs/commands.md#timer"],
  // Client settings at the provider that a netrc tool meets (issue 23).
  [
    /^(dpop_required|redirect_uri_policy|no_refresh_token|provider_no_par_endpoint)$/,
    "docs/provider-setup.md#client-settings-real-sites-turn-on",
  ],
  [
    /^(config_|init_|issuer_no_discovery$|variable_not_set$|path_not_absolute$|not_user_config$|not_service_account$|home_not_ours$|credential_file_untrusted$)/,
    "docs/configuration.md",
  ],
  [
    /^(client_|credential_file_|provider_no_device_flow$|redirect_uri_unregistered$|authorization_request_refused$)/,
    "docs/provider-setup.md#register-the-client-in-keycloak",
  ],
  [/^keychain_/, "docs/security.md#the-refresh-token-in-the-keychain"],
  [
    /^(answer_too_large|token_answer_malformed|refresh_refused_token_saved|no_room_to_save)$/,
    "docs/security.md#reliability",
  ],
  [/^(netrc_syntax|token_too_long|token_malformed)$/, "docs/security.md#how-files-are-written"],
  [/^(netrc_|state_|lock_|dir_|file_|temp_file_|home_not_set$)/, "docs/security.md#files-and-permissions"],
  // Sessions and the provider's answers.
  [
    /^(not_signed_in|session_expired|issuer_mismatch|refresh_subject_changed|provider_)/,
    `${TROUBLESHOOTING}#errors`,
  ],
];

/** The page that explains errors with this code, if one does. */
export function docPage(code: string): string | undefined {
  return PAGES.find(([re]) => re.test(code))?.[1];
}
