import { CliError, ExitCode } from "./errors.ts";

const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

/** A flag or key that is not a duration this tool takes (one code, wherever it is found). */
export function badDuration(message: string, hint?: string): CliError {
  return new CliError("bad_duration", message, { exitCode: ExitCode.usage, hint });
}

/** Parses "90s", "10m", "1h30m", "2d" (or a bare number of seconds) into seconds. */
export function parseDuration(text: string, what: string): number {
  const trimmed = text.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  // Blanks between the parts are allowed, so that "1h 5m" as formatSpan prints it reads back.
  const re = /\s*(\d+)\s*([smhd])/gy;
  let total = 0;
  let matched = 0;
  for (let m = re.exec(trimmed); m !== null; m = re.exec(trimmed)) {
    total += Number(m[1]) * (UNITS[m[2] as string] ?? 0);
    matched = re.lastIndex;
  }
  if (trimmed === "" || matched !== trimmed.length) {
    throw badDuration(
      `${what}: invalid duration ${JSON.stringify(text)}`,
      "use a number with a unit, e.g. 30s, 10m, 1h or 1h30m",
    );
  }
  return total;
}

/** "42m", "1h 5m", "3d 2h", "12s": coarse on purpose, for humans. */
export function formatSpan(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) {
    const m = Math.floor((s % 3600) / 60);
    return m === 0 ? `${Math.floor(s / 3600)}h` : `${Math.floor(s / 3600)}h ${m}m`;
  }
  const h = Math.floor((s % 86400) / 3600);
  return h === 0 ? `${Math.floor(s / 86400)}d` : `${Math.floor(s / 86400)}d ${h}h`;
}

/**
 * "valid, expires in 42m (2026-11-25T10:00:00Z)", "expired 3m ago (...)", "unknown". Takes a Date
 * or the ISO 8601 string the token state keeps (as is: `status` need not format dates).
 */
export function describeExpiry(expiresAt: Date | string | null, now: Date): string {
  const time =
    expiresAt === null ? NaN : typeof expiresAt === "string" ? Date.parse(expiresAt) : expiresAt.getTime();
  if (expiresAt === null || Number.isNaN(time)) return "unknown";
  const iso = (typeof expiresAt === "string" ? expiresAt : expiresAt.toISOString()).replace(/\.\d{3}Z$/, "Z");
  const delta = (time - now.getTime()) / 1000;
  return delta > 0
    ? `valid, expires in ${formatSpan(delta)} (${iso})`
    : `expired ${formatSpan(-delta)} ago (${iso})`;
}
