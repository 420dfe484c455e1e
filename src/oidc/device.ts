/**
 * The device sign-in (RFC 8628) for sessions without a local browser: show where to go and the
 * user code (and a QR code on a terminal), then poll until the user approves or denies it.
 */
import type { Context } from "../context.ts";
import { formatSpan } from "../duration.ts";
import { deviceCodeExpired, signInTimedOut } from "./sign-in-errors.ts";
import { longTimeoutSignal } from "../net/timers.ts";
import { deviceAuthorization, pollDeviceAuthorization } from "./device-poll.ts";
import type { Provider } from "./provider.ts";
import type { TokenSet } from "./token-set.ts";

export interface DeviceSignInOptions {
  /** Give up after this many seconds (the device code's own expiry may come first). */
  timeoutSeconds: number;
  log: (line: string) => void;
}

export interface DeviceSignInResult {
  tokens: TokenSet;
}

export async function deviceSignIn(
  ctx: Context,
  p: Provider,
  o: DeviceSignInOptions,
): Promise<DeviceSignInResult> {
  const device = await deviceAuthorization(p);
  const out = ctx.stderr;
  const target = device.verificationUriComplete ?? device.verificationUri;
  out.write(`\nTo sign in, open this page in a browser on any device:\n\n    ${target}\n\n`);
  out.write(
    device.verificationUriComplete !== undefined
      ? `and check that it shows the code ${device.userCode}\n`
      : `and enter the code ${device.userCode}\n`,
  );
  if (ctx.stdout.isTTY === true && ctx.json !== true) {
    // Lazily: only this path needs the QR encoder.
    const { renderUnicodeCompact } = await import("uqr");
    ctx.stdout.write(`\n${renderUnicodeCompact(target, { border: 2 })}\n\n`);
  }
  const seconds = Math.min(o.timeoutSeconds, device.expiresIn > 0 ? device.expiresIn : o.timeoutSeconds);
  out.write(`Waiting for the sign-in to be approved (up to ${formatSpan(seconds)}; Ctrl-C to cancel)...\n`);
  o.log(`device code valid for ${device.expiresIn}s; polling every ${device.interval}s`);

  const deadline = longTimeoutSignal(seconds * 1000);
  const signal = AbortSignal.any([ctx.signal, deadline]);
  try {
    const tokens = await pollDeviceAuthorization(p, device, signal);
    return { tokens };
  } catch (e) {
    if (ctx.signal.aborted) throw e;
    if (deadline.aborted) {
      const hint = "run `nix-cache-login login --device` again (use --timeout to wait longer)";
      if (seconds < o.timeoutSeconds) {
        throw deviceCodeExpired(
          `the device code expired after ${formatSpan(seconds)} before the sign-in was approved`,
          {
            hint,
          },
        );
      }
      throw signInTimedOut(`timed out after ${formatSpan(seconds)} waiting for the sign-in to be approved`, {
        hint,
      });
    }
    throw e;
  }
}
