/**
 * Whether the provider knows the client and its loopback redirect URI, asked before a browser opens.
 * A provider that does not (a wrong `client_id`, a redirect URI nobody registered) shows its error
 * page in the browser and never redirects back (RFC 6749 section 4.1.2.1: it MUST NOT redirect to an
 * unverified URI), so without this check the sign-in only ends at its timeout (issue 24).
 *
 * The check is one GET of the authorization endpoint with the sign-in's own parameters and
 * `prompt=none` (OpenID Connect Core section 3.1.2.1), without cookies and without following
 * redirects: a provider that knows the client and the redirect URI sends the browser-less request
 * back to that URI (with `error=login_required`, as no one is signed in here) or shows its login
 * page; one that does not answers with its error page, for Keycloak an HTTP 400 page saying
 * "Client not found." or "Invalid parameter: redirect_uri" (AuthorizationEndpointChecker). The
 * request's state, nonce and PKCE verifier are fresh and thrown away, so even a provider that
 * issued a code to it issued one that nobody can redeem; nothing of the answer is printed raw.
 */
import { printable } from "../text.ts";
import { CliError, ExitCode } from "../errors.ts";
import { checkedEndpoint, type FetchLike, type Logger } from "../net/http.ts";

export interface ClientCheck {
  /** The authorization URL, with throw-away state, nonce and PKCE challenge, and prompt=none. */
  url: URL;
  state: string;
  issuer: string;
  clientId: string;
  redirectUri: string;
  /** The redirect URI to tell an administrator to register (any port of 127.0.0.1, or the fixed one). */
  register: string;
  /** Where the client ID was set, for the messages: "client_id in FILE", or "--client-id". */
  clientIdFrom: string;
  /** The provider's fetch (makeFetch: capped bodies, proxies, the slow-request notice). */
  fetch: FetchLike;
  log: Logger;
  timeoutSeconds: number;
}

/** Errors a provider answers `prompt=none` with when all is well but no one is signed in. */
const SIGN_IN_NEEDED = new Set([
  "login_required",
  "interaction_required",
  "consent_required",
  "account_selection_required",
]);

/** An error page is looked at this far (Keycloak's is about 3 KB; the fetch caps any body at 1 MiB). */
const PAGE_BYTES = 64 * 1024;

/**
 * Keycloak's secure-redirect-uris-enforcer (a client policy executor, part of the built-in OAuth
 * 2.1 profiles) refuses a redirect URI that is registered: its page says "Invalid Redirect Uri:
 * invalid loopback address" (or "invalid uri", ...), in `<div id="kc-error-message"><p>`. That is
 * no unregistered URI, and the fix is another one: the message, printable, or undefined.
 */
export function redirectPolicyMessage(page: string): string | undefined {
  const m = /id="kc-error-message"[^>]*>\s*<p[^>]*>\s*(Invalid Redirect Uri: [^<]{1,200})<\/p>/.exec(page);
  return m?.[1] === undefined ? undefined : printable(m[1].replace(/&amp;/g, "&").trim(), 200);
}

/** Which parameter an error page blames, from its words (Keycloak's, or OAuth's error codes). */
export function blamed(page: string): "client_id" | "redirect_uri" | undefined {
  const text = page.replace(/<[^>]*>/g, " ").replace(/\s+/g, " ");
  // Keycloak: "Client not found.", "Client disabled." (Messages.CLIENT_NOT_FOUND / CLIENT_DISABLED).
  if (/client not found|client disabled|unknown client|invalid_client|client is invalid/i.test(text))
    return "client_id";
  // Keycloak: "Invalid parameter: redirect_uri" (Messages.INVALID_PARAMETER); OAuth: invalid_redirect_uri.
  if (/redirect_uri|redirect uri/i.test(text)) return "redirect_uri";
  return undefined;
}

/**
 * Throws a one-line CliError when the provider would not let this client sign in here;
 * "par_required" when it would, once the request is pushed (RFC 9126).
 */
export async function checkClient(c: ClientCheck): Promise<"ok" | "par_required"> {
  const host = c.url.host;
  // As for every request we make ourselves: https, or http on loopback for a loopback issuer.
  checkedEndpoint(c.url.href, c.issuer, "sign-in endpoint (authorization_endpoint)");
  // A network error is the caller's to translate (Provider.translate), as for any other request.
  const res = await c.fetch(c.url.href, {
    method: "GET",
    redirect: "manual",
    headers: { accept: "text/html", "accept-language": "en" },
    signal: AbortSignal.timeout(c.timeoutSeconds * 1000),
  });
  if (res.status >= 300 && res.status < 400) {
    await res.body?.cancel().catch(() => undefined);
    const location = res.headers.get("location");
    let back: URL | undefined;
    try {
      back = location === null ? undefined : new URL(location, c.url);
    } catch {
      back = undefined;
    }
    const ours =
      back !== undefined &&
      `${back.origin}${back.pathname}` === new URL(c.redirectUri).origin + new URL(c.redirectUri).pathname &&
      back.searchParams.get("state") === c.state;
    const error = ours ? back?.searchParams.get("error") : null;
    if (error === null || error === undefined || SIGN_IN_NEEDED.has(error)) {
      c.log(`the authorization endpoint accepts client_id ${c.clientId} and ${c.redirectUri}`);
      return "ok";
    }
    const description = back?.searchParams.get("error_description");
    // Keycloak: invalid_request "Pushed Authorization Request is only allowed." (a client with
    // "Pushed authorization request required" on); oidc-provider: "... must be used".
    if (error === "invalid_request" && /pushed authori[sz]ation request/i.test(description ?? "")) {
      c.log("the authorization endpoint requires a pushed authorization request (RFC 9126): sending one");
      return "par_required";
    }
    throw new CliError(
      "sign_in_refused",
      `${host} refuses a browser sign-in for client_id ${JSON.stringify(c.clientId)}: ${printable(error, 60)}${description === null || description === undefined ? "" : ` (${printable(description, 200)})`}`,
      {
        hint: "the client needs the authorization code flow with PKCE (Keycloak: Standard flow); `nix-cache-login login --device` may work meanwhile",
      },
    );
  }
  if (res.status < 400) {
    // A login page: the provider took the request (some ignore prompt=none).
    await res.body?.cancel().catch(() => undefined);
    c.log(`the authorization endpoint answers client_id ${c.clientId} with its page (HTTP ${res.status})`);
    return "ok";
  }
  const page = (await res.text().catch(() => "")).slice(0, PAGE_BYTES);
  const policy = redirectPolicyMessage(page);
  if (policy !== undefined) {
    throw new CliError(
      "redirect_uri_policy",
      `${host} refuses the redirect URI ${c.redirectUri} for client_id ${JSON.stringify(c.clientId)} by a client policy: ${policy} (HTTP ${res.status})`,
      {
        exitCode: ExitCode.usage,
        hint: "a loopback redirect is plain http: ask the provider's administrator to leave this client out of client policies that refuse http redirect URIs (Keycloak's OAuth 2.1 profile for public clients does), or sign in with `nix-cache-login login --device`",
      },
    );
  }
  const which = res.status < 500 ? blamed(page) : undefined;
  if (which === "client_id") {
    throw new CliError(
      "client_unknown",
      `${host} does not know the client ${JSON.stringify(c.clientId)} (${c.clientIdFrom}): its authorization endpoint answers HTTP ${res.status}`,
      {
        exitCode: ExitCode.usage,
        hint: `check ${c.clientIdFrom} against the client's ID in the provider (Keycloak: Clients)`,
      },
    );
  }
  if (which === "redirect_uri") {
    throw new CliError(
      "redirect_uri_unregistered",
      `${host} does not accept the redirect URI ${c.redirectUri} for client_id ${JSON.stringify(c.clientId)}: its authorization endpoint answers HTTP ${res.status}`,
      {
        hint: `ask the provider's administrator to register ${c.register} as a redirect URI of the client (Keycloak: Valid redirect URIs)`,
      },
    );
  }
  throw new CliError(
    "authorization_request_refused",
    `${host} refuses a sign-in for client_id ${JSON.stringify(c.clientId)} with the redirect URI ${c.redirectUri}: its authorization endpoint answers HTTP ${res.status}`,
    { hint: `check ${c.clientIdFrom}, and that ${c.register} is a registered redirect URI of the client` },
  );
}
