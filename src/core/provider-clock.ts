/**
 * The provider's time, as the token state remembers it. Every expiry we store comes from the
 * provider (its `exp`, or its `expires_in` counted from its own time), so it is judged on the
 * provider's clock, not on the local one, which may be hours off: laptops resume from sleep with
 * a wrong clock, VMs drift, small servers boot before NTP.
 *
 * At each grant the offset between the two clocks is measured (./../oidc/provider.ts: the access
 * token's `iat`, else the answer's `Date` header) and stored with the local time it was taken at
 * and, on Linux, the time since boot (`/proc/uptime`, which counts suspend too and which no clock
 * setting moves). Later, in the same boot, the provider's time is the measurement plus the time
 * since boot that has passed: right even when the local clock has moved meanwhile, and the
 * difference shows by how much it moved. Elsewhere (another boot, macOS) the stored offset is
 * added to the local clock, and an access token issued in the local future still gives away a
 * clock that went back.
 */
import { bootId, uptimeMs } from "../fs/boot.ts";
import { numericDateMs } from "../oidc/jwt-claims.ts";
import { plausibleProviderTime } from "../oidc/token-answer.ts";
import type { TokenState } from "../store/state.ts";

/** A difference of clocks we call a wrong clock (and below which we look no further). */
export const CLOCK_SKEW_NOTICE_MS = 60_000;

export type ClockRecord = NonNullable<TokenState["clock"]>;

/** What to store after a grant: provider time minus local time, taken at `local`. */
export function clockRecord(offsetMs: number, local: Date): ClockRecord {
  const up = uptimeMs();
  const boot = bootId();
  return {
    offset_ms: Math.round(offsetMs),
    measured_at: local.toISOString(),
    ...(up !== undefined && boot !== "" ? { boot_id: boot, uptime_ms: up } : {}),
  };
}

export interface ProviderTime {
  /** The best estimate of the provider's time now. */
  now: Date;
  /** Provider minus local, in ms: how wrong the local clock looks (0 when nothing is known). */
  skewMs: number;
  /**
   * The local clock moved since the offset was measured (boot time says so, or the access token
   * was issued in the local future): a sum made with the local clock cannot be trusted.
   */
  moved: boolean;
  /**
   * How `now` was found: from the time since boot (a measurement), the stored offset, the access
   * token's `iat` alone (a lower bound: the provider's time is at least that), or the local clock.
   */
  basis: "boot" | "offset" | "issued" | "local";
}

/**
 * The stored offset (provider minus local, ms), when it is a reading: the provider's time it gave
 * at measured_at is a plausible date (../oidc/token-answer.ts). An older version stored whatever
 * an answer said (an `iat` of 1e13 s, a `Date:` in year 275760); such a record is no reading.
 */
export function storedOffsetMs(state: TokenState | undefined): number | undefined {
  const c = state?.clock;
  if (c === undefined || typeof c.offset_ms !== "number") return undefined;
  return plausibleProviderTime(Date.parse(c.measured_at) + c.offset_ms) ? c.offset_ms : undefined;
}

/**
 * The provider's time now, from the state's clock record and the access token's `iat`. A reading
 * that gives no plausible date is ignored, as an absent one: `now` is always a valid Date.
 */
export function providerTime(state: TokenState | undefined, local: Date): ProviderTime {
  const localMs = local.getTime();
  let nowMs = localMs;
  let basis: ProviderTime["basis"] = "local";
  let moved = false;
  const c = state?.clock;
  const offset = storedOffsetMs(state);
  if (c !== undefined && offset !== undefined) {
    const measuredAt = Date.parse(c.measured_at);
    const up = c.boot_id !== undefined && c.boot_id === bootId() ? uptimeMs() : undefined;
    const elapsed = up !== undefined && c.uptime_ms !== undefined ? up - c.uptime_ms : undefined;
    if (elapsed !== undefined && elapsed >= 0 && plausibleProviderTime(measuredAt + offset + elapsed)) {
      nowMs = measuredAt + offset + elapsed;
      basis = "boot";
      moved = Math.abs(localMs - (measuredAt + elapsed)) > CLOCK_SKEW_NOTICE_MS;
    } else if (plausibleProviderTime(localMs + offset)) {
      nowMs = localMs + offset;
      basis = "offset";
    }
  }
  // The provider issued the token at `iat`, so its time now is at least that: a token from the
  // future says the clock went back since (or the offset was never measured).
  const iat = numericDateMs(state?.access_token, "iat");
  if (iat !== undefined && plausibleProviderTime(iat) && iat - nowMs > CLOCK_SKEW_NOTICE_MS) {
    nowMs = iat;
    basis = "issued";
    moved = true;
  }
  return { now: new Date(nowMs), skewMs: nowMs - localMs, moved, basis };
}

/** "about 120 minutes behind the provider's clock": how wrong the clock looks, for messages. */
export function describeSkew(skewMs: number): string {
  const minutes = Math.max(1, Math.round(Math.abs(skewMs) / 60_000));
  return `about ${minutes} minute${minutes === 1 ? "" : "s"} ${skewMs > 0 ? "behind" : "ahead of"} the provider's clock`;
}
