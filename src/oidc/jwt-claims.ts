/**
 * Claims read from a JWT without verifying it: only for scheduling and for noticing a clock that
 * moved, never to decide whom to trust. A token that is not a JWT has none.
 */

/** The payload of a three-part JWT, or undefined. */
export function unverifiedClaims(token: string | undefined): Record<string, unknown> | undefined {
  const parts = token?.split(".");
  if (parts?.length !== 3) return undefined;
  try {
    const payload: unknown = JSON.parse(Buffer.from(parts[1] as string, "base64url").toString("utf8"));
    return typeof payload === "object" && payload !== null && !Array.isArray(payload)
      ? (payload as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/** A NumericDate claim (`exp`, `iat`) in ms since the epoch, when it is a finite number. */
export function numericDateMs(token: string | undefined, claim: "exp" | "iat"): number | undefined {
  const value = unverifiedClaims(token)?.[claim];
  return typeof value === "number" && Number.isFinite(value) ? value * 1000 : undefined;
}
