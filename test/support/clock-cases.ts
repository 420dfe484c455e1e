/**
 * Issue 20's clock cases, run against a real provider and the real cache (Apache +
 * mod_auth_openidc): the CLI alone runs with its clock 2 h ahead or behind (libfaketime), then
 * with the real clock the next renewal must work without a browser, the netrc must hold a token
 * the cache accepts, and `status` must be right. Shared by the fast realm (test/e2e/clock.test.ts)
 * and the real Keycloak (test/e2e/keycloak.test.ts).
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import { test } from "node:test";
import { runCli, withClock, type RunResult, type Workspace } from "./cli.ts";

export const FAKETIME_INSTALL_HINT =
  "install libfaketime: `apt-get install -y --no-install-recommends faketime` (scripts/test.sh does)";

/** Fails (never skips) without Debian's faketime, naming the package. */
export function requireFaketime(): void {
  try {
    execFileSync("faketime", ["-f", "+0", "true"], { stdio: "ignore" });
  } catch {
    throw new Error(`faketime is not installed: ${FAKETIME_INSTALL_HINT}`);
  }
}

export interface ClockBed {
  name: string;
  /**
   * A user signed in (refresh token stored) and renewed once with the real clock; with
   * `renewed: false` only signed in, so no clock was measured yet.
   */
  userWorkspace(o?: { renewed?: boolean }): Promise<Workspace>;
  /** A service account that has not fetched a token yet. */
  serviceWorkspace(): Promise<Workspace>;
  /** The cache (curl with the workspace's netrc) answers 200. */
  assertCacheAccepts(ws: Workspace, what: string): Promise<void>;
  /** The token endpoint's path, to count grants in --verbose output. */
  tokenPath: string;
}

/** One row of the closing note's table. */
export interface ClockRow {
  bed: string;
  shift: string;
  command: string;
  code: number | null;
  grants: number;
  nextNeededBrowser: boolean;
}

export const clockRows: ClockRow[] = [];

/** Token requests the run made, from its --verbose lines (`POST <url> -> 200 (N ms)`). */
export function grantsIn(r: RunResult, tokenPath: string): number {
  return r.stderr.split("\n").filter((l) => l.startsWith("verbose: POST ") && l.includes(`${tokenPath} ->`))
    .length;
}

async function state(ws: Workspace): Promise<Record<string, unknown>> {
  const { readdir } = await import("node:fs/promises");
  const name = (await readdir(ws.stateDir)).find((n) => n.endsWith(".json"));
  assert.ok(name !== undefined, `no token state in ${ws.stateDir}`);
  return JSON.parse(await readFile(`${ws.stateDir}/${name}`, "utf8")) as Record<string, unknown>;
}

/**
 * After a skewed run: with the real clock, `renew` succeeds without a browser (exit 0, not 3),
 * the cache accepts the netrc's token, and `status` calls it valid with no clock warning and an
 * expiry in the real future.
 */
async function assertRecovers(bed: ClockBed, ws: Workspace, renew: string[], what: string): Promise<boolean> {
  const next = await runCli(ws, [...renew, "--verbose"]);
  // Exit 3 is "login required": only a browser (or device) sign-in would help then.
  const neededBrowser = next.code === 3;
  assert.equal(next.code, 0, `${what}: the next ${renew.join(" ")} with the real clock: ${next.stderr}`);
  await bed.assertCacheAccepts(ws, what);
  const st = await runCli(ws, ["status", "--json"]);
  assert.equal(st.code, 0, `${what}: status: ${st.stdout}${st.stderr}`);
  const report = JSON.parse(st.stdout) as {
    access_token: { valid: boolean; expires_at: string };
    clock: { looks_wrong: boolean };
  };
  assert.equal(report.access_token.valid, true);
  assert.equal(report.clock.looks_wrong, false, `${what}: status thinks the real clock is wrong`);
  const left = Date.parse(report.access_token.expires_at) - Date.now();
  assert.ok(
    left > 0 && left < 3 * 3600_000,
    `${what}: expiry ${report.access_token.expires_at} is not ~now + TTL`,
  );
  return neededBrowser;
}

export function clockSkewCases(makeBed: () => ClockBed): void {
  const bed = (): ClockBed => {
    requireFaketime();
    return makeBed();
  };
  for (const shift of ["+2h", "-2h"]) {
    test(`${shift}: refresh renews (one grant, the rotated token kept), and the next refresh needs no browser`, async () => {
      const b = bed();
      const ws = await b.userWorkspace();
      const before = (await state(ws)).refresh_token;
      const r = await runCli(ws, ["refresh", "--verbose"], withClock(shift));
      const grants = grantsIn(r, b.tokenPath);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(grants, 1);
      assert.notEqual((await state(ws)).refresh_token, before, "the rotated refresh token is stored");
      const browser = await assertRecovers(b, ws, ["refresh"], `refresh ${shift}`);
      clockRows.push({
        bed: b.name,
        shift,
        command: "refresh",
        code: r.code,
        grants,
        nextNeededBrowser: browser,
      });
    });

    test(`${shift}: the first refresh, with no clock measured yet, checks the ID token on the provider's clock`, async () => {
      const b = bed();
      const ws = await b.userWorkspace({ renewed: false });
      const r = await runCli(ws, ["refresh", "--verbose"], withClock(shift));
      assert.equal(r.code, 0, r.stderr);
      assert.equal(
        grantsIn(r, b.tokenPath),
        1,
        "the answer is checked again from memory, not asked for again",
      );
      const browser = await assertRecovers(b, ws, ["refresh"], `first refresh ${shift}`);
      clockRows.push({
        bed: b.name,
        shift,
        command: "refresh (no clock measured before)",
        code: r.code,
        grants: grantsIn(r, b.tokenPath),
        nextNeededBrowser: browser,
      });
    });

    test(`${shift}: refresh --min-valid sees the clock moved and renews with one request`, async () => {
      const b = bed();
      const ws = await b.userWorkspace();
      const r = await runCli(ws, ["refresh", "--min-valid", "1m", "--verbose"], withClock(shift));
      const grants = grantsIn(r, b.tokenPath);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(grants, 1, "the moved clock is not trusted: one renewal");
      assert.match(r.stderr, /clock moved/);
      // And now that the offset is measured again, a second run under the same clock trusts it.
      const again = await runCli(ws, ["refresh", "--min-valid", "1m", "--verbose"], withClock(shift));
      assert.equal(again.code, 0, again.stderr);
      assert.equal(grantsIn(again, b.tokenPath), 0, "the fresh token lasts: no request");
      const browser = await assertRecovers(b, ws, ["refresh"], `refresh --min-valid ${shift}`);
      clockRows.push({
        bed: b.name,
        shift,
        command: "refresh --min-valid 1m",
        code: r.code,
        grants,
        nextNeededBrowser: browser,
      });
    });

    test(`${shift}: service-account stores the expiry on the provider's clock`, async () => {
      const b = bed();
      const ws = await b.serviceWorkspace();
      const r = await runCli(ws, ["service-account", "--verbose"], withClock(shift));
      const grants = grantsIn(r, b.tokenPath);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(grants, 1);
      await b.assertCacheAccepts(ws, `service-account ${shift}`);
      // The token stored under the skewed clock expires on the provider's clock: ~now + its TTL.
      const expires = Date.parse(String((await state(ws)).access_token_expires_at));
      assert.ok(expires > Date.now() && expires < Date.now() + 3 * 3600_000, new Date(expires).toISOString());
      // Back on the real clock, the stored offset no longer matches: the clock moved, so --min-valid
      // renews once rather than trust its sums; after that it trusts them again.
      const moved = await runCli(ws, ["service-account", "--min-valid", "1m", "--verbose"]);
      assert.equal(moved.code, 0, moved.stderr);
      assert.equal(grantsIn(moved, b.tokenPath), 1, "the clock moved back: one renewal");
      const fresh = await runCli(ws, ["service-account", "--min-valid", "1m", "--verbose"]);
      assert.equal(fresh.code, 0, fresh.stderr);
      assert.equal(grantsIn(fresh, b.tokenPath), 0, "the token is fresh: no request");
      const browser = await assertRecovers(b, ws, ["service-account"], `service-account ${shift}`);
      clockRows.push({
        bed: b.name,
        shift,
        command: "service-account",
        code: r.code,
        grants,
        nextNeededBrowser: browser,
      });
    });

    test(`${shift}: status says the clock looks wrong and judges the token on the provider's clock`, async () => {
      const b = bed();
      const ws = await b.userWorkspace();
      const r = await runCli(ws, ["status"], withClock(shift));
      assert.equal(r.code, 0, `${r.stdout}${r.stderr}`);
      assert.match(
        r.stdout,
        /clock:\s+the system clock looks wrong by about 120 minutes (ahead of|behind) the provider's clock/,
      );
      assert.match(r.stdout, /access token:\s+valid/);
      const json = await runCli(ws, ["status", "--json"], withClock(shift));
      const report = JSON.parse(json.stdout) as { clock: { skew_seconds: number; looks_wrong: boolean } };
      assert.equal(report.clock.looks_wrong, true);
      assert.ok(Math.abs(Math.abs(report.clock.skew_seconds) - 7200) < 60, String(report.clock.skew_seconds));
      // doctor reports it as a problem, with the size of the skew.
      const doc = await runCli(ws, ["doctor", "--json"], withClock(shift));
      const checks = (JSON.parse(doc.stdout) as { checks: { id: string; status: string; summary: string }[] })
        .checks;
      const clock = checks.find((c) => c.id === "clock");
      assert.equal(clock?.status, "problem", doc.stdout);
      assert.match(clock.summary, /the system clock looks wrong: about 120 minutes/);
      const real = await runCli(ws, ["doctor", "--json"]);
      const realClock = (JSON.parse(real.stdout) as { checks: { id: string; status: string }[] }).checks.find(
        (c) => c.id === "clock",
      );
      assert.equal(realClock?.status, "ok", real.stdout);
      const browser = await assertRecovers(b, ws, ["refresh"], `status ${shift}`);
      clockRows.push({
        bed: b.name,
        shift,
        command: "status",
        code: r.code,
        grants: 0,
        nextNeededBrowser: browser,
      });
    });
  }
}

/** The table for the closing note, printed at the end of a file. */
export function printClockRows(): void {
  for (const row of clockRows) {
    console.log(
      `clock ${row.bed} ${row.shift} ${row.command}: exit ${row.code}, ${row.grants} grant(s), next renewal needed a browser: ${row.nextNeededBrowser ? "yes" : "no"}`,
    );
  }
}
