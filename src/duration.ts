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
