/**
 * The device authorization grant (RFC 8628), the protocol half: ask for a device code, then poll
 * the token endpoint until the user approves or denies it. What the user is shown is ./device.ts.
 */
import { setTimeout } from "node:timers/promises";
import type * as OidcClient from "openid-client";
import { CliError } from "../errors.ts";
import { checkedEndpoint } from "../net/http.ts";
import { printable } from "../text.ts";
import type { Provider } from "./provider.ts";
import type { TokenSet } from "./token-set.ts";

/** What the user is shown for a device sign-in; `response` also holds the device code (a secret). */
export interface DeviceAuthorization {
  verificationUri: string;
  verificationUriComplete: string | undefined;
  userCode: string;
  expiresIn: number;
  /** Seconds between polls: the provider's interval clamped to DEVICE_INTERVAL_MIN..MAX. */
  interval: number;
  response: unknown;
  /** PKCE (RFC 7636) verifier sent with the device code on every poll. */
  codeVerifier: string;
}

const DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code";

/** RFC 8628's default, and the fastest we poll whatever the provider says (0.001 s would flood it). */
export const DEVICE_INTERVAL_MIN = 5;
/** The slowest interval a provider may ask for at first: a sign-in must stay responsive. */
export const DEVICE_INTERVAL_MAX = 60;
/** The bound for intervals grown by slow_down. */
const DEVICE_INTERVAL_SLOWEST = 300;

export function clampPollInterval(interval: number | undefined): number {
  if (interval === undefined || !Number.isFinite(interval)) return DEVICE_INTERVAL_MIN;
  return Math.min(Math.max(interval, DEVICE_INTERVAL_MIN), DEVICE_INTERVAL_MAX);
}

/**
 * RFC 8628 section 3.1: asks for a device code and the user code to show. Always with S256 PKCE:
 * Keycloak requires it on the device grant when the client has a PKCE method set (Keycloak PR
 * 9711; int128/kubelogin issue 1470), and a provider that does not need it ignores it.
 */
export async function deviceAuthorization(p: Provider): Promise<DeviceAuthorization> {
  let codeVerifier = "";
  const res = await p.withConfig("device authorization", async (l, c) => {
    if (c.serverMetadata().device_authorization_endpoint === undefined) {
      throw new CliError(
        "provider_no_device_flow",
        `${p.host} does not offer the device sign-in (no device authorization endpoint)`,
        {
          hint: "sign in with a browser (leave out --device), or enable the OAuth 2.0 Device Authorization Grant for the client",
        },
      );
    }
    codeVerifier = l.randomPKCECodeVerifier();
    const params = {
      scope: p.loginScope(),
      code_challenge: await l.calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: "S256",
    };
    return l.initiateDeviceAuthorization(c, params).catch((e: unknown) => {
      throw p.translate(e, "device authorization", { signIn: true });
    });
  });
  const issuer = p.settings.issuer;
  const complete = res.verification_uri_complete;
  return {
    verificationUri: checkedVerificationUri(res.verification_uri, issuer).href,
    verificationUriComplete:
      complete === undefined ? undefined : checkedVerificationUri(complete, issuer).href,
    userCode: printable(res.user_code, 100),
    expiresIn: res.expires_in,
    interval: clampPollInterval(res.interval),
    response: res,
    codeVerifier,
  };
}

/**
 * RFC 8628 section 3.4-3.5: polls the token endpoint at the provider's interval (5 s when it names
 * none), keeps waiting on `authorization_pending`, adds 5 s on `slow_down`, and stops on
 * `expired_token`, `access_denied` or when `signal` aborts (at once, not at the next poll).
 * Not openid-client's pollDeviceAuthorizationGrant: it looks at its signal only between waits of
 * up to 5 s, so Ctrl-C would hang (and a pending timer keep the process alive) that long.
 */
export async function pollDeviceAuthorization(
  p: Provider,
  device: DeviceAuthorization,
  signal: AbortSignal,
): Promise<TokenSet> {
  const deviceCode = (device.response as OidcClient.DeviceAuthorizationResponse).device_code;
  let interval = device.interval;
  for (;;) {
    // At most DEVICE_INTERVAL_SLOWEST seconds: well within setTimeout's range. Rejects with the
    // signal's reason wrapped in an AbortError: the caller looks at the signals, not the error.
    await setTimeout(interval * 1000, undefined, { signal });
    const res = await p.withConfig(
      "device sign-in",
      (l, c) => {
        l.enableNonRepudiationChecks(c);
        return l
          .genericGrantRequest(c, DEVICE_CODE_GRANT, {
            device_code: deviceCode,
            code_verifier: device.codeVerifier,
          })
          .catch((e: unknown) => {
            const error = (e as { error?: unknown }).error;
            if (error === "authorization_pending" || error === "slow_down") return error;
            throw p.translate(e, "device sign-in", { signIn: true });
          });
      },
      "grant",
    );
    if (res === "authorization_pending") continue;
    if (res === "slow_down") {
      // RFC 8628 section 3.5: 5 s more for this and every later request (bounded all the same).
      interval = Math.min(interval + 5, DEVICE_INTERVAL_SLOWEST);
      p.log(`the provider asked to slow down; polling every ${interval}s`);
      continue;
    }
    return p.tokenSet(res);
  }
}

/**
 * The page the user is sent to must be https (http only on a loopback host of a loopback issuer):
 * the user types a code and signs in there. The URL is printed, so control characters would be
 * refused by the URL parser or percent-encoded by it.
 */
function checkedVerificationUri(raw: string, issuer: string): URL {
  return checkedEndpoint(raw, issuer, "device verification URI");
}
