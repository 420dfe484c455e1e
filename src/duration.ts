import { CliError, ExitCode } from "./errors.ts";

const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

/** A flag or key that is not a duration this tool takes (one code, wherever it is found). */
export function badDuration(message: string, hint?: string): CliError {
  return new CliError("bad_duration", message, { exitCode: ExitCode.usage, hint });
}

/**
 * The one duration rule, for every configuration key (`timeout`, `default_token_lifetime`) and every
 * option (`--timeout`, `--min-valid`, `--interval`): whole numbers, each with a unit (s, m, h or d),
 * parts may follow one another ("1h30m", "1h 30m"). A bare number is refused rather than guessed:
 * `--min-valid 10` could mean seconds or minutes. systemd reads the same spelling as a time span.
 */
export const DURATION_RULE = "a duration is a whole number with a unit (s, m, h or d), e.g. 30s, 10m, 1h30m";

/**
 * Why `value` is not a duration, or undefined when it is one: the same words for a config key and
 * an option. `value` may be any TOML value (`timeout = 30` is an integer, `timeout = true` a boolean).
 */
export function durationProblem(value: unknown): string | undefined {
  if (typeof value === "string" && parseSeconds(value) !== undefined) return undefined;
  const text =
    typeof value === "string"
      ? value.trim()
      : typeof value === "number" || typeof value === "bigint" || typeof value === "boolean"
        ? String(value)
        : undefined;
  if (text !== undefined && /^\d+$/.test(text)) {
    return `${JSON.stringify(text)} has no unit: write ${text}s, ${text}m or ${text}h (${DURATION_RULE})`;
  }
  const shown =
    typeof value === "string"
      ? JSON.stringify(value)
      : (text ?? (Array.isArray(value) ? "an array" : "a table"));
  return `${shown} is not a duration (${DURATION_RULE})`;
}

/** Seconds, or undefined when `text` does not follow the rule. */
function parseSeconds(text: string): number | undefined {
  const trimmed = text.trim();
  // Blanks between the parts are allowed, so that "1h 5m" as formatSpan prints it reads back.
  const re = /\s*(\d+)\s*([smhd])/gy;
  let total = 0;
  let matched = 0;
  for (let m = re.exec(trimmed); m !== null; m = re.exec(trimmed)) {
    total += Number(m[1]) * (UNITS[m[2] as string] ?? 0);
    matched = re.lastIndex;
  }
  return trimmed === "" || matched !== trimmed.length ? undefined : total;
}

/** Parses "90s", "10m", "1h30m", "2d" into seconds; anything else is a usage error naming `what`. */
export function parseDuration(text: string, what: string): number {
  const seconds = parseSeconds(text);
  if (seconds === undefined) {
    throw badDuration(`${what}: ${durationProblem(text) ?? ""}`);
  }
  return seconds;
}

/**
 * "42m", "1h 5m", "3d 2h", "12s": coarse on purpose, for humans, and rounded to the nearest unit
 * shown (a fresh 5-minute token read 299.6 s later is "5m", not "4m").
 */
export function formatSpan(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  const minutes = Math.round(s / 60);
  if (minutes < 60) return `${minutes}m`;
  if (minutes < 24 * 60) {
    const h = Math.floor(minutes / 60);
    const m = minutes % 60;
    return m === 0 ? `${h}h` : `${h}h ${m}m`;
  }
  const hours = Math.round(s / 3600);
  const d = Math.floor(hours / 24);
  const h = hours % 24;
  return h === 0 ? `${d}d` : `${d}d ${h}h`;
}

/**
 * An instant as `status` and the other commands print it: ISO 8601 in UTC to the second
 * (2026-11-25T10:00:00Z), whether it comes as a Date or as the string the token state keeps.
 * Anything that is not a time is returned as it was, for the caller to make printable.
 */
export function formatInstant(at: Date | string): string {
  const time = typeof at === "string" ? Date.parse(at) : at.getTime();
  if (Number.isNaN(time)) return String(at);
  return new Date(time).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/**
 * "valid, expires in 42m (2026-11-25T10:00:00Z)", "expired 3m ago (...)", "unknown". Takes a Date
 * or the ISO 8601 string the token state keeps (as is: `status` need not format dates).
 */
export function describeExpiry(expiresAt: Date | string | null, now: Date): string {
  const time =
    expiresAt === null ? NaN : typeof expiresAt === "string" ? Date.parse(expiresAt) : expiresAt.getTime();
  if (expiresAt === null || Number.isNaN(time)) return "unknown";
  const iso = formatInstant(expiresAt);
  const delta = (time - now.getTime()) / 1000;
  return delta > 0
    ? `valid, expires in ${formatSpan(delta)} (${iso})`
    : `expired ${formatSpan(-delta)} ago (${iso})`;
}
