import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { describeExpiry, formatSpan, parseDuration } from "../../src/duration.ts";
import { CliError, ExitCode } from "../../src/errors.ts";

describe("parseDuration", () => {
  const good: [string, number][] = [
    ["10m", 600],
    ["1h30m", 5400],
    ["1h 30m", 5400],
    ["0s", 0],
    ["90s", 90],
    ["2d", 172800],
    ["1d2h3m4s", 93784],
    ["  10m\n", 600],
    ["10 m", 600],
    ["007s", 7],
  ];
  for (const [text, seconds] of good) {
    test(`${JSON.stringify(text)} is ${seconds}s`, () => {
      assert.equal(parseDuration(text, "--min-valid"), seconds);
    });
  }

  const bad = [
    "",
    "   ",
    "m",
    "abc",
    "-5m",
    "1.5h",
    "10M",
    "10x",
    "10m5",
    "1h30",
    "10 minutes",
    "1w",
    "+10m",
    "0x10",
    "1h 30",
  ];
  const RULE = "(a duration is a whole number with a unit (s, m, h or d), e.g. 30s, 10m, 1h30m)";
  const refused: [string, string][] = [
    ...bad.map((text): [string, string] => [text, `${JSON.stringify(text)} is not a duration ${RULE}`]),
    // No unit: the spellings to choose from.
    ...["90", " 10 ", "0"].map((text): [string, string] => {
      const n = text.trim();
      return [text, `"${n}" has no unit: write ${n}s, ${n}m or ${n}h ${RULE}`];
    }),
  ];
  for (const [text, message] of refused) {
    test(`${JSON.stringify(text)} is refused with a usage error naming the option`, () => {
      assert.throws(
        () => parseDuration(text, "--min-valid"),
        (e: unknown) => {
          assert.ok(e instanceof CliError);
          assert.equal(e.message, `--min-valid: ${message}`);
          assert.equal(e.exitCode, ExitCode.usage);
          assert.equal(e.code, "bad_duration");
          return true;
        },
      );
    });
  }

  test("what formatSpan prints reads back as the same span", () => {
    for (const seconds of [0, 59, 60, 61 * 60, 3600, 3660, 86400, 90000, 93600]) {
      assert.equal(parseDuration(formatSpan(seconds), "x"), seconds);
    }
  });
});

describe("formatSpan", () => {
  const cases: [number, string][] = [
    [0, "0s"],
    [0.4, "0s"],
    [-5, "0s"],
    [12, "12s"],
    [59, "59s"],
    [59.6, "1m"],
    [60, "1m"],
    [119, "1m"],
    [42 * 60, "42m"],
    [3599, "59m"],
    [3600, "1h"],
    [3660, "1h 1m"],
    [2 * 3600 + 5 * 60 + 59, "2h 5m"],
    [86399, "23h 59m"],
    [86400, "1d"],
    [86400 + 3599, "1d"],
    [3 * 86400 + 2 * 3600, "3d 2h"],
    [400 * 86400, "400d"],
  ];
  for (const [seconds, text] of cases) {
    test(`${seconds}s is ${text}`, () => assert.equal(formatSpan(seconds), text));
  }
});

describe("describeExpiry", () => {
  const now = new Date("2026-11-25T09:18:00.000Z");

  test("unknown when there is no expiry", () => {
    assert.equal(describeExpiry(null, now), "unknown");
  });

  test("valid, with the time left and the instant in UTC without milliseconds", () => {
    assert.equal(
      describeExpiry(new Date("2026-11-25T10:00:00.000Z"), now),
      "valid, expires in 42m (2026-11-25T10:00:00Z)",
    );
    assert.equal(
      describeExpiry(new Date("2026-11-25T09:18:30.250Z"), now),
      "valid, expires in 30s (2026-11-25T09:18:30Z)",
    );
    assert.equal(
      describeExpiry(new Date("2026-11-27T11:18:00.000Z"), now),
      "valid, expires in 2d 2h (2026-11-27T11:18:00Z)",
    );
  });

  test("expired, with how long ago", () => {
    assert.equal(
      describeExpiry(new Date("2026-11-25T09:15:00.000Z"), now),
      "expired 3m ago (2026-11-25T09:15:00Z)",
    );
    assert.equal(
      describeExpiry(new Date("2026-11-24T08:00:00.000Z"), now),
      "expired 1d 1h ago (2026-11-24T08:00:00Z)",
    );
  });

  test("an expiry exactly now is expired", () => {
    assert.equal(describeExpiry(new Date(now), now), "expired 0s ago (2026-11-25T09:18:00Z)");
    assert.match(describeExpiry(new Date(now.getTime() + 1), now), /^valid, expires in 0s /);
  });
});
