/**
 * Whether the client's tokens would need a DPoP proof, asked before anyone signs in, so that the
 * refusal ends in the terminal at once, not after the user signed in (the other check before the
 * browser opens is ./client-check.ts).
 */
import type { Provider } from "./provider.ts";

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
