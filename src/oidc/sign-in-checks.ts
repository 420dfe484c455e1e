/**
 * What a sign-in asks the provider before anyone signs in, so that a request the provider will
 * refuse ends in the terminal at once, not after the user signed in (or on a page in the browser
 * that never comes back): what the authorization endpoint answers the request, and whether the
 * token endpoint wants a DPoP proof of this client.
 */
import { makeFetch } from "../net/http.ts";
import { printable } from "../text.ts";
import type { AuthorizationRequest, Provider } from "./provider.ts";

export type AuthorizationAnswer =
  | { kind: "ok" }
  /** A redirect back to our redirect URI with an error (RFC 6749 4.1.2.1). */
  | { kind: "error"; error: string; description: string | undefined }
  /** An error page: a 400, or Keycloak's error page (its message, printable). */
  | { kind: "page"; status: number; message: string | undefined };

/**
 * What the authorization endpoint answers a request before the browser is sent there (our own
 * GET, no cookies, redirects not followed): a login page or a redirect to it is fine; a redirect
 * back to the redirect URI with an error (Keycloak: a client that requires PAR) or an error page
 * (Keycloak's client policies refuse the redirect URI there, and the browser would stay on that
 * page until the sign-in times out) is said now. A failure to ask is no verdict: the browser
 * tries for itself. A pushed request is not asked about: its request_uri is good for one use.
 */
export async function checkAuthorizationRequest(
  p: Provider,
  request: AuthorizationRequest,
  env: Parameters<typeof makeFetch>[0],
): Promise<AuthorizationAnswer> {
  if (request.url === undefined) return { kind: "ok" };
  let res: Response;
  try {
    res = await makeFetch(env, p.log)(request.url.href, {
      method: "GET",
      redirect: "manual",
      headers: { accept: "text/html" },
      signal: AbortSignal.timeout(p.settings.timeoutSeconds * 1000),
    });
  } catch (e) {
    p.log(`could not check the authorization request first: ${String(e)}`);
    return { kind: "ok" };
  }
  const location = res.headers.get("location");
  if (res.status >= 300 && res.status < 400 && location !== null) {
    await res.body?.cancel();
    let to: URL;
    try {
      to = new URL(location, request.url);
    } catch {
      return { kind: "ok" };
    }
    const error = to.searchParams.get("error");
    if (`${to.origin}${to.pathname}` !== request.redirectUri || error === null) return { kind: "ok" };
    // Only an answer to this request (RFC 6749 4.1.2.1 returns the state) is taken as one.
    if (to.searchParams.get("state") !== request.state) return { kind: "ok" };
    const description = to.searchParams.get("error_description");
    return {
      kind: "error",
      error: printable(error, 100),
      description: description === null ? undefined : printable(description),
    };
  }
  if (res.status < 400) {
    await res.body?.cancel();
    return { kind: "ok" };
  }
  // A refusal is taken as one when it says so: HTTP 400, RFC 6749 4.1.2.1's answer to a bad
  // redirect URI or client, or Keycloak's error page. A 401, 403 or 404 may be a proxy or a
  // gateway that the browser, with its cookies, gets past.
  const message = errorPageMessage(await boundedText(res, 64 * 1024));
  if (res.status !== 400 && message === undefined) {
    p.log(`the authorization endpoint answered HTTP ${res.status}; the browser will see for itself`);
    return { kind: "ok" };
  }
  return { kind: "page", status: res.status, message };
}

/**
 * Whether the token endpoint would refuse this client's grants for want of a DPoP proof (RFC
 * 9449), asked before the user signs in: a code exchange with a placeholder code. Keycloak checks
 * the proof before the code ("DPoP proof is missing" for a client with "Require DPoP bound
 * tokens" on) and otherwise answers invalid_grant, logged as a CODE_TO_TOKEN_ERROR event. Only
 * asked of providers that advertise DPoP at all (dpop_signing_alg_values_supported); any answer
 * other than a DPoP error is no verdict.
 */
export async function checkDpopRequired(p: Provider, redirectUri: string): Promise<void> {
  const algs = (await p.metadata()).dpop_signing_alg_values_supported;
  if (!Array.isArray(algs) || algs.length === 0) return;
  const verdict = await p.withConfig("code exchange", (l, c) =>
    l
      .genericGrantRequest(c, "authorization_code", {
        code: "nix-cache-login-dpop-check",
        redirect_uri: redirectUri,
        code_verifier: l.randomPKCECodeVerifier(),
      })
      .then(
        () => undefined,
        (e: unknown) => p.translate(e, "code exchange", { signIn: true }),
      ),
  );
  if (verdict?.code === "dpop_required") throw verdict;
  p.log(`the token endpoint asks no DPoP proof of this client (${verdict?.message ?? "no answer"})`);
}

/** At most `limit` bytes of a body as text; the rest is not read. */
async function boundedText(res: Response, limit: number): Promise<string> {
  const reader = res.body?.getReader();
  if (reader === undefined) return "";
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    while (size < limit) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.length;
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
  return Buffer.concat(chunks).subarray(0, limit).toString("utf8");
}

/**
 * The message of Keycloak's error page (`<div id="kc-error-message"><p class="instruction">...`),
 * made printable; undefined for any other page.
 */
export function errorPageMessage(html: string): string | undefined {
  const m = /id="kc-error-message"[^>]*>\s*<p[^>]*>([^<]{1,500})<\/p>/.exec(html);
  if (m?.[1] === undefined) return undefined;
  const text = m[1]
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&amp;/g, "&")
    .trim();
  return text === "" ? undefined : printable(text, 200);
}
