/**
 * The one translation of what openid-client (or the network below it) threw into a CliError: one
 * line for the user, a hint, the exit code, and the library's error as the cause for --verbose.
 * Two tables decide: the OAuth error a provider answered (RFC 6749 section 5.2, RFC 8628 section
 * 3.5), and openid-client's own codes for answers that are no OAuth answer. The library's errors
 * are read, never changed.
 */
import { CliError, ExitCode, type ExitCodeValue } from "../errors.ts";
import { networkProblem, requestUrlOf } from "../net/http.ts";
import { printable, quoted } from "../text.ts";
import type { ProviderSettings } from "./settings.ts";
import { deviceCodeExpired, signInDenied } from "./sign-in-errors.ts";

/** The request that failed, as far as its error message and hint need it. */
export interface FailedRequest {
  /** As messages name it: "refresh", "code exchange", "discovery", ... */
  what: string;
  /** The issuer's host. */
  host: string;
  settings: ProviderSettings;
  /** The client authenticates (a service account): a refused grant is its setup's fault. */
  serviceAccount: boolean;
  /** The token endpoint authentication method in use, named in a hint. */
  authMethod: string;
  /** A user's sign-in (code exchange, device flow): invalid_grant there is a bad code, not an ended session. */
  signIn: boolean;
}

/** The provider refused the refresh token (invalid_grant): the session is over; exit 3. */
export class SessionEndedError extends CliError {
  constructor(
    message: string,
    /** The provider's error_description, made printable. */
    readonly description: string | undefined,
  ) {
    super("session_expired", message, {
      exitCode: ExitCode.loginRequired,
      hint: "run `nix-cache-login login`",
    });
  }
}

/** An OAuth error answer, made printable: `desc` is ` (description)` or empty, for messages. */
interface OAuthAnswer {
  error: string;
  description: string | undefined;
  desc: string;
}

type Translation = (r: FailedRequest, e: unknown) => CliError | undefined;

/** What each OAuth error means here; an error not listed, or an entry that answers undefined, is provider_refused. */
const OAUTH_ERRORS: Record<string, (a: OAuthAnswer, r: FailedRequest, e: unknown) => CliError | undefined> = {
  access_denied: (a, r, e) =>
    r.signIn ? signInDenied(`the sign-in was denied at ${r.host}${a.desc}`, { cause: e }) : undefined,
  expired_token: (a, r, e) =>
    r.signIn
      ? deviceCodeExpired(`the device code expired before the sign-in was approved${a.desc}`, {
          hint: "run `nix-cache-login login --device` again and approve it sooner",
          cause: e,
        })
      : undefined,
  invalid_grant: (a, r, e) => {
    if (r.signIn) {
      return new CliError("sign_in_rejected", `${r.host} rejected the ${r.what}: invalid_grant${a.desc}`, {
        hint: "run `nix-cache-login login` again",
        cause: e,
      });
    }
    if (r.serviceAccount) {
      // Client credentials have no session: a sign-in cannot help, the client's setup can.
      const { clientId, clientSecretFile, clientKeyFile } = r.settings;
      const credential =
        clientKeyFile !== undefined
          ? `that its registered public key matches ${clientKeyFile}`
          : `that ${clientSecretFile ?? "client_secret_file"} holds its current secret`;
      return new CliError(
        "client_credentials_refused",
        `${r.host} refused the ${r.what} for client ${clientId}: invalid_grant${a.desc}`,
        {
          hint: `check at ${r.host} that client ${clientId} exists, is enabled and may use service accounts (client credentials), and ${credential}; the provider's log says more`,
          cause: e,
        },
      );
    }
    return new SessionEndedError(`your session at ${r.host} expired or was revoked${a.desc}`, a.description);
  },
  invalid_request: (a, r, e) => (dpopMissing(a) ? dpopRequired(a, r, e) : undefined),
  // RFC 9449 sections 7.1 and 8: a proof that is wrong, or lacks the server's nonce.
  invalid_dpop_proof: (a, r, e) => dpopRequired(a, r, e),
  use_dpop_nonce: (a, r, e) => dpopRequired(a, r, e),
  invalid_client: (a, r) => clientRejected(a, r),
  unauthorized_client: (a, r) => clientRejected(a, r),
};

/** openid-client's codes for what is no OAuth error answer (or fails its checks). */
const LIBRARY_ERRORS: Record<string, Translation> = {
  // The answer's ID token or parameters failed validation: only a sign-in says so in these words.
  OAUTH_JWT_CLAIM_COMPARISON_FAILED: (r, e) => answerInvalid(r, e),
  OAUTH_JWT_TIMESTAMP_CHECK_FAILED: (r, e) => answerInvalid(r, e),
  OAUTH_INVALID_RESPONSE: (r, e) => answerInvalid(r, e),
  OAUTH_MISSING_REQUIRED_PARAMETER: (r, e) => answerInvalid(r, e),
  OAUTH_KEY_SELECTION_FAILED: (r, e) => answerInvalid(r, e),
  OAUTH_JSON_ATTRIBUTE_COMPARISON_FAILED: (r, e) => {
    if (r.what !== "discovery") return undefined;
    const found = ((e as { cause?: unknown }).cause as { body?: { issuer?: unknown } } | undefined)?.body
      ?.issuer;
    return typeof found === "string" ? issuerMismatch(r.settings, found, e) : undefined;
  },
  OAUTH_RESPONSE_IS_NOT_CONFORM: (r, e) => notOAuth(r, e),
  OAUTH_RESPONSE_IS_NOT_JSON: (r, e) => notOAuth(r, e),
  OAUTH_PARSE_ERROR: (r, e) => {
    const answer = httpAnswer(e);
    return answer === undefined ? undefined : unexpectedAnswer(answer, r, e);
  },
};

/** Turns whatever openid-client threw into one line for the user, with detail for --verbose. */
export function translateError(e: unknown, r: FailedRequest): CliError {
  // Our own errors from inside openid-client's requests (an oversized or malformed answer) come
  // back wrapped ("something went wrong"): the inner one says what happened.
  for (let cur: unknown = e, depth = 0; cur instanceof Error && depth < 4; depth++) {
    if (cur instanceof CliError) return cur;
    cur = cur.cause;
  }
  const url = requestUrlOf(e);
  const network = networkProblem(e, url);
  if (network !== undefined) {
    return new CliError(
      "provider_unreachable",
      `cannot reach ${url === undefined ? r.host : new URL(url).host}: ${network.reason}`,
      {
        hint: network.hint,
        detail: `${r.what} failed`,
        cause: e,
      },
    );
  }
  const answer = oauthAnswer(e);
  if (answer !== undefined) {
    return (
      OAUTH_ERRORS[answer.error]?.(answer, r, e) ??
      new CliError("provider_refused", `${r.host} refused the ${r.what}: ${answer.error}${answer.desc}`, {
        cause: e,
      })
    );
  }
  const err = e as { code?: unknown; message?: string };
  const byCode = typeof err.code === "string" ? LIBRARY_ERRORS[err.code]?.(r, e) : undefined;
  return (
    byCode ??
    new CliError("provider_request_failed", `${r.what} with ${r.host} failed: ${err.message ?? String(e)}`, {
      cause: e,
    })
  );
}

/**
 * The OAuth error of an answer: in the error's fields, or for a 401 in its WWW-Authenticate
 * challenge (e.g. invalid_client). The provider's words reach the terminal: no control
 * characters, no screenfuls.
 */
function oauthAnswer(e: unknown): OAuthAnswer | undefined {
  const err = e as { error?: unknown; error_description?: unknown; code?: unknown; cause?: unknown };
  let error = err.error;
  let description = err.error_description;
  if (err.code === "OAUTH_WWW_AUTHENTICATE_CHALLENGE" && Array.isArray(err.cause)) {
    const params = (err.cause[0] as { parameters?: Record<string, string> } | undefined)?.parameters ?? {};
    if (params.error !== undefined) {
      error = params.error;
      description = params.error_description;
    }
  }
  if (typeof error !== "string") return undefined;
  const shown = typeof description === "string" ? printable(description) : undefined;
  return {
    error: printable(error, 100),
    description: shown,
    desc: shown === undefined ? "" : ` (${shown})`,
  };
}

/** Keycloak's answer to a grant without the proof it requires: invalid_request "DPoP proof is missing" (DPoPUtil). */
function dpopMissing(a: OAuthAnswer): boolean {
  return a.description !== undefined && /\bDPoP\b/.test(a.description);
}

/**
 * The client may only get DPoP-bound tokens (RFC 9449): Keycloak 26.4+ with the client's "Require
 * DPoP bound tokens" on, or a client policy whose DPoP executor turned it on (the built-in OAuth
 * 2.1 profile for public clients has one). Such an access token is refused without a proof made
 * with the client's key for each request, and Nix (libcurl) sends the netrc's password as it is:
 * no netrc can carry it. Only the administrator can change that.
 */
function dpopRequired(a: OAuthAnswer, r: FailedRequest, e: unknown): CliError {
  const { clientId } = r.settings;
  return new CliError(
    "dpop_required",
    `client ${clientId} at ${r.host} may only get DPoP-bound tokens${a.desc}, which a netrc cannot carry (Nix sends the token as a password, without a DPoP proof)`,
    {
      exitCode: ExitCode.usage,
      hint: `ask the administrator of ${r.host} to turn off "Require DPoP bound tokens" for client ${clientId} (and any client policy that enforces DPoP for it, such as Keycloak's OAuth 2.1 profile for public clients), or to set up a client for the cache that does not require DPoP`,
      cause: e,
    },
  );
}

function clientRejected(a: OAuthAnswer, r: FailedRequest): CliError {
  const s = r.settings;
  return new CliError("client_rejected", `${r.host} rejected client ${s.clientId}: ${a.error}${a.desc}`, {
    exitCode: ExitCode.usage,
    hint: !r.serviceAccount
      ? "check client_id in the configuration and the client's settings in Keycloak"
      : s.clientKeyFile !== undefined
        ? `check client_id, the key in ${s.clientKeyFile} and that the client's public key (or JWKS URL) is registered at the provider`
        : `check client_id and the secret in ${s.clientSecretFile ?? "client_secret_file"}, and token_endpoint_auth_method (now ${r.authMethod})`,
  });
}

function answerInvalid(r: FailedRequest, e: unknown): CliError | undefined {
  if (!r.signIn) return undefined;
  const err = e as { code?: string; message?: string };
  return new CliError(
    "provider_answer_invalid",
    `the answer from ${r.host} to the ${r.what} failed validation: ${err.message ?? err.code}`,
    {
      hint: "check the system clock and the client settings in Keycloak; run again with --verbose for details",
      cause: e,
    },
  );
}

/** An answer that is no OAuth answer: its HTTP status says more when it has one. */
function notOAuth(r: FailedRequest, e: unknown): CliError {
  const answer = httpAnswer(e);
  if (answer !== undefined) return unexpectedAnswer(answer, r, e);
  return new CliError("provider_answer_unexpected", `${r.host} sent an unexpected answer to the ${r.what}`, {
    hint: "check that the issuer URL points at the realm (e.g. https://sso.example.org/realms/NAME)",
    detail: (e as { message?: string }).message,
    cause: e,
  });
}

/**
 * The HTTP answer an openid-client error carries (non-JSON and non-conforming answers do, and an
 * OAuth error body). Told by its shape, not by class: through a proxy it is undici's own Response,
 * which is no instance of the global one.
 */
function httpAnswer(e: unknown): Response | undefined {
  const isAnswer = (x: unknown): x is Response =>
    typeof x === "object" &&
    x !== null &&
    typeof (x as Response).status === "number" &&
    typeof (x as Response).headers?.get === "function";
  for (let cur: unknown = e, depth = 0; cur !== undefined && cur !== null && depth < 4; depth++) {
    if (isAnswer(cur)) return cur;
    const r = (cur as { response?: unknown }).response;
    if (isAnswer(r)) return r;
    cur = (cur as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * Whether the endpoint answered that it is not there (404 or 410), whatever the body: a JSON error,
 * an HTML page or nothing. With a cached discovery document, that is a document gone stale.
 */
export function endpointNotFound(e: unknown): boolean {
  const status = httpAnswer(e)?.status;
  return status === 404 || status === 410;
}

/**
 * A trailing slash (or any other difference) between the configured issuer and the one the
 * provider names: openid-client compares them byte for byte (RFC 8414 section 3.3), and so must
 * the configuration.
 */
function issuerMismatch(s: ProviderSettings, found: string, cause: unknown): CliError {
  const slashOnly = found.replace(/\/+$/, "") === s.issuer.replace(/\/+$/, "");
  return new CliError(
    "issuer_mismatch",
    `${s.configPath}: issuer: ${quoted(s.issuer)} does not match the issuer the provider names, ${quoted(found)}`,
    {
      exitCode: ExitCode.usage,
      hint: slashOnly
        ? `write issuer = ${quoted(found)} (with${found.endsWith("/") ? "" : "out"} the trailing slash), exactly as the provider names it`
        : `write issuer = ${quoted(found)} if that is the provider you mean; the issuer must be written exactly as the provider names it`,
      cause,
    },
  );
}

/** `HTTP 403 from host /path`, with a hint chosen by the status (and by which request it was). */
function unexpectedAnswer(res: Response, r: FailedRequest, cause: unknown): CliError {
  const { what, settings: s } = r;
  let where: string;
  try {
    const u = new URL(res.url);
    where = `${u.host} ${u.pathname}`;
  } catch {
    where = new URL(s.issuer).host;
  }
  const type = res.headers.get("content-type") ?? "";
  const kind = /html/i.test(type)
    ? " (an HTML page)"
    : res.headers.get("content-length") === "0"
      ? " (empty body)"
      : "";
  const status = res.status;
  let hint: string;
  let exitCode: ExitCodeValue = ExitCode.failure;
  if (what === "discovery") {
    if (status === 404 || status === 410) {
      hint = `check issuer in ${s.configPath}: it must point at the realm (e.g. https://sso.example.org/realms/NAME), whose /.well-known/openid-configuration the provider serves`;
      exitCode = ExitCode.usage;
    } else if (status >= 300 && status < 400) {
      const to = res.headers.get("location");
      hint = `the provider redirects${to === null ? "" : ` to ${quoted(to)}`}: write issuer exactly as the provider serves it`;
      exitCode = ExitCode.usage;
    } else if (status === 401 || status === 403) {
      hint =
        "something in front of the provider (a proxy, firewall or login page) refuses the request: check the issuer URL and any HTTPS_PROXY";
    } else if (status >= 500) {
      hint = "the provider has a problem: try again later, or ask its administrators";
    } else {
      hint = "check that the issuer URL points at the realm (e.g. https://sso.example.org/realms/NAME)";
    }
  } else if (status === 400 || status === 401 || status === 403) {
    hint = r.serviceAccount
      ? `the provider refused the client without saying why: check client_id, the ${s.clientKeyFile !== undefined ? "key in client_key_file" : "secret in client_secret_file"} and token_endpoint_auth_method in ${s.configPath} (some providers accept only client_secret_post)`
      : `the provider refused the request without saying why: check client_id in ${s.configPath} and the client's settings at the provider`;
    exitCode = ExitCode.usage;
  } else if (status === 404 || status === 405) {
    hint =
      "the endpoint from the discovery document is not there: check issuer, and that the provider is fully started";
  } else if (status >= 500) {
    hint = "the provider has a problem: try again later, or ask its administrators";
  } else {
    hint = "run again with --verbose for details";
  }
  return new CliError("provider_http_error", `${what}: HTTP ${status} from ${where}${kind}`, {
    exitCode,
    hint,
    cause,
  });
}
