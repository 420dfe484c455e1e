/**
 * `doctor` against the real thing: the realm, Apache + mod_auth_openidc, and Nix 2.8 with its own
 * nix.conf (NIX_CONF_DIR). Each verdict is checked against what Nix and curl actually do with the
 * same files, never against canned answers.
 */
import assert from "node:assert/strict";
import { chown, readFile, writeFile } from "node:fs/promises";
import * as net from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { netrcPassword, runCli, type RunResult, type Workspace } from "../support/cli.ts";
import {
  HOST,
  curl,
  expireToken,
  nixRealiseWithConf,
  requireRoot,
  setNixNetrcFile,
  startBed,
  writeNetrc,
  type Bed,
  type Protected,
} from "../support/protected-bed.ts";
import { isValidPath, nixStoreDelete } from "../support/nix.ts";
import { startProtectedCache } from "../support/cache.ts";

interface Check {
  id: string;
  title: string;
  status: "ok" | "problem" | "note" | "skipped";
  summary: string;
  details: string[];
  fix: string[];
}
interface Report {
  ok: boolean;
  problems: number;
  config_path: string | null;
  checks: Check[];
}

// One realm, one Apache and one Nix store for the file. Tests that point nix.conf's netrc-file at
// their own workspace set it first, so none depends on what an earlier one left there.
let bed: Bed;

before(async () => {
  bed = await startBed({ accessTokenTTL: 300 });
});

after(async () => {
  await bed?.stop();
});

/** doctor with the Nix env's NIX_CONF_DIR, as a user whose nix.conf lives there. */
async function doctor(
  ws: Workspace,
  args: string[] = [],
  env: Record<string, string | undefined> = {},
): Promise<RunResult> {
  return runCli(ws, ["doctor", ...args], { env: { NIX_CONF_DIR: bed.nix.confDir, ...env } });
}

async function doctorJson(
  ws: Workspace,
  env: Record<string, string | undefined> = {},
): Promise<{ r: RunResult; report: Report }> {
  const r = await doctor(ws, ["--json"], env);
  assert.equal(r.stderr, "", "--json keeps stderr quiet");
  const report = JSON.parse(r.stdout) as Report;
  assert.equal(r.code, report.ok ? 0 : 1, "exit code follows the verdict");
  return { r, report };
}

function byId(report: Report, id: string): Check {
  const c = report.checks.find((x) => x.id === id);
  assert.ok(c !== undefined, `no check ${id} in ${report.checks.map((x) => x.id).join(", ")}`);
  return c;
}

function problemIds(report: Report): string[] {
  return report.checks.filter((c) => c.status === "problem").map((c) => c.id);
}

async function serviceAccount(p: Protected): Promise<Workspace> {
  const ws = await bed.workspace(p);
  const r = await runCli(ws, ["service-account"]);
  assert.equal(r.code, 0, r.stderr);
  await setNixNetrcFile(bed, ws.netrcPath);
  return ws;
}

/** What Nix makes of the same nix.conf and netrc: true when it substituted the paths. */
async function nixFetchesWithConf(p: Protected): Promise<boolean> {
  const r = await nixRealiseWithConf(bed, p.cache);
  const fetched = r.code === 0;
  if (fetched) await nixStoreDelete(bed.nix, bed.paths);
  for (const path of bed.paths) assert.equal(await isValidPath(bed.nix, path), false);
  return fetched;
}

/** A loopback port nothing listens on (fetch refuses some low ports outright, so pick a free one). */
async function closedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return port;
}

describe("doctor", () => {
  test("good token, netrc and nix.conf: every check ok, exit 0, and Nix indeed fetches", async () => {
    const ws = await serviceAccount(bed);
    const text = await doctor(ws);
    console.log(text.stdout);
    assert.equal(text.code, 0, text.stdout + text.stderr);
    assert.match(text.stdout, /^No problems found\.$/m);
    assert.doesNotMatch(text.stdout, /^problem/m);

    const { report } = await doctorJson(ws);
    assert.equal(report.ok, true);
    assert.equal(report.problems, 0);
    assert.equal(report.config_path, ws.configPath);
    assert.deepEqual(
      report.checks.map((c) => [c.id, c.status]),
      [
        ["config", "ok"],
        ["client_secret", "ok"],
        ["token", "ok"],
        ["clock", "ok"],
        ["netrc_file", "ok"],
        ["netrc_entry", "ok"],
        ["netrc_token", "ok"],
        ["netrc_machine", "ok"],
        ["netrc_lines", "ok"],
        ["nix", "ok"],
        ["nix_libcurl", "ok"],
        ["nix_netrc_file", "ok"],
        ["cache", "ok"],
        ["cache_unauthenticated", "ok"],
      ],
    );
    // Debian's Nix 2.8 loads Debian's libcurl (not a store path): the version from the library.
    assert.match(
      byId(report, "nix_libcurl").summary,
      /^Nix uses libcurl 7\.88\.\d+: netrc lines up to 4095 bytes/,
    );
    assert.match(byId(report, "cache_unauthenticated").summary, /answers 401 to a request without a token/);
    assert.match(byId(report, "nix").summary, /nix \(Nix\) 2\.8\.\d; upstream Nix, single-user/);
    assert.match(
      byId(report, "nix").details.join("\n"),
      /`nix show-config`/,
      "Nix 2.8 has no `nix config show`",
    );
    assert.match(
      byId(report, "cache").summary,
      /^GET http:\/\/127\.0\.0\.1:\d+\/nix-cache-info with the netrc entry for 127\.0\.0\.1 -> 200 /,
    );
    assert.equal(await nixFetchesWithConf(bed), true);
  });

  test("expired token: token and cache problems with the fix; Nix fails until service-account runs", async () => {
    const ws = await serviceAccount(bed);
    // The token ran out a minute ago (the realm's key signs the expired copy).
    await expireToken(ws, bed, bed.realm.serviceClientId);
    const { report } = await doctorJson(ws);
    assert.deepEqual(problemIds(report), ["token", "cache"]);
    assert.match(byId(report, "token").summary, /^access token expired \d+[smh] ago \(/);
    assert.deepEqual(byId(report, "token").fix[0], "run `nix-cache-login service-account`");
    const cache = byId(report, "cache");
    // The reason comes from mod_auth_openidc's WWW-Authenticate header.
    assert.match(cache.summary, /^the cache rejected the token \(invalid_token: .+\)$/);
    assert.equal(cache.fix[0], "run `nix-cache-login service-account`");
    assert.equal(byId(report, "netrc_token").status, "ok", "the netrc does hold the (expired) current token");
    assert.equal(await nixFetchesWithConf(bed), false);

    const text = await doctor(ws);
    assert.equal(text.code, 1);
    assert.match(text.stdout, /^problem +token +access token expired/m);
    assert.match(text.stdout, /^ +fix: run `nix-cache-login service-account`$/m);
    assert.match(text.stdout, /^2 problems found: token, cache\.$/m);

    assert.equal((await runCli(ws, ["service-account"])).code, 0);
    assert.equal((await doctor(ws)).code, 0);
    assert.equal(await nixFetchesWithConf(bed), true);
  });

  test("missing entry: named, with the command that writes it; the cache wants credentials; Nix fails", async () => {
    const ws = await serviceAccount(bed);
    await writeNetrc(ws, "machine github.com login octocat password gh-token\n");
    const { report } = await doctorJson(ws);
    assert.deepEqual(problemIds(report), ["netrc_entry", "cache"]);
    assert.equal(byId(report, "netrc_entry").summary, `no entry for ${HOST} in ${ws.netrcPath}`);
    assert.deepEqual(byId(report, "netrc_entry").fix, ["run `nix-cache-login service-account`"]);
    assert.equal(byId(report, "netrc_token").status, "skipped");
    assert.equal(
      byId(report, "cache").summary,
      `the cache wants credentials and the netrc has none for ${HOST}`,
    );
    assert.equal(await nixFetchesWithConf(bed), false);

    // No netrc at all.
    const { rm } = await import("node:fs/promises");
    await rm(ws.netrcPath);
    const none = await doctorJson(ws);
    assert.deepEqual(problemIds(none.report), ["netrc_file", "cache"]);
    assert.equal(byId(none.report, "netrc_file").summary, `${ws.netrcPath} does not exist`);
  });

  test("wrong netrc-file in nix.conf: the exact line to add; with that line Nix fetches", async () => {
    const ws = await serviceAccount(bed);
    const elsewhere = join(bed.nix.confDir, "netrc");
    await setNixNetrcFile(bed, elsewhere);
    const text = await doctor(ws);
    assert.equal(text.code, 1);
    const confFile = join(bed.nix.confDir, "nix.conf");
    const line = `netrc-file = ${ws.netrcPath}`;
    assert.match(text.stdout, /^problem +nix netrc-file +Nix reads .* not /m);
    assert.ok(text.stdout.includes(`fix: add this line to ${confFile}:  ${line}\n`), text.stdout);
    assert.ok(text.stdout.includes(`on NixOS:  nix.settings.netrc-file = "${ws.netrcPath}";\n`), text.stdout);
    const { report } = await doctorJson(ws);
    assert.deepEqual(problemIds(report), ["nix_netrc_file"]);
    assert.equal(byId(report, "nix_netrc_file").summary, `Nix reads ${elsewhere}, not ${ws.netrcPath}`);
    assert.equal(await nixFetchesWithConf(bed), false, "Nix indeed sends nothing");

    // Apply the fix exactly as printed (appended: the last assignment wins).
    await writeFile(confFile, `${await readFile(confFile, "utf8")}${line}\n`);
    assert.equal((await doctor(ws)).code, 0);
    assert.equal(await nixFetchesWithConf(bed), true);
  });

  test("netrc traps: an earlier `default`, a port in the machine name, loose mode, foreign owner, stale first entry", async () => {
    const ws = await serviceAccount(bed);
    const token = netrcPassword(await readFile(ws.netrcPath, "utf8"), HOST) as string;
    let ours = `machine ${HOST} login nix-cache-login password ${token}\n`;
    const cacheInfo = `${bed.cache.url}/nix-cache-info`;

    // `default` first: curl sends the default credentials, and the cache says no.
    await writeNetrc(ws, `default login anonymous password anon-pass\n${ours}`);
    let { report } = await doctorJson(ws);
    assert.deepEqual(problemIds(report), ["netrc_entry", "cache"]);
    assert.match(
      byId(report, "netrc_entry").summary,
      /the `default` on line 1 comes before the 127\.0\.0\.1 entry on line 2/,
    );
    assert.match(byId(report, "cache").summary, /^the cache rejected the token/);
    assert.equal((await curl(cacheInfo, ws.netrcPath)).status, 401);
    assert.equal((await runCli(ws, ["service-account"])).code, 0, "which the fix repairs");
    const repaired = (await doctorJson(ws)).report;
    assert.equal(repaired.ok, true);
    const me = process.getuid?.() === 0 ? "root" : `uid ${process.getuid?.()} \\(.+\\)`;
    assert.match(byId(repaired, "netrc_file").summary, new RegExp(`\\(mode 0600, owner ${me}\\)$`));
    const current = netrcPassword(await readFile(ws.netrcPath, "utf8"), HOST) as string;
    ours = `machine ${HOST} login nix-cache-login password ${current}\n`;

    // `machine 127.0.0.1:PORT` never matches: curl sends nothing.
    await writeNetrc(ws, `machine ${HOST}:${bed.cache.port} login nix-cache-login password ${token}\n`);
    ({ report } = await doctorJson(ws));
    assert.deepEqual(problemIds(report), ["netrc_entry", "netrc_machine", "cache"]);
    assert.match(
      byId(report, "netrc_machine").summary,
      new RegExp(`^\`machine ${HOST}:${bed.cache.port}\` \\(line 1\\) never matches`),
    );
    assert.equal((await curl(cacheInfo, ws.netrcPath)).status, 401);

    // A stale entry before the current one: curl takes the first.
    await writeNetrc(ws, `machine ${HOST} login old password stale-token\n${ours}`);
    ({ report } = await doctorJson(ws));
    assert.deepEqual(problemIds(report), ["netrc_token", "cache"]);
    assert.match(
      byId(report, "netrc_token").summary,
      /line 1\) holds an old token; the current one is on line 2/,
    );
    assert.equal((await curl(cacheInfo, ws.netrcPath)).status, 401);

    // Readable by others, then owned by someone else: curl does not mind, doctor does.
    await writeNetrc(ws, ours, 0o644);
    ({ report } = await doctorJson(ws));
    assert.deepEqual(problemIds(report), ["netrc_file"]);
    assert.match(byId(report, "netrc_file").summary, /mode 0644: other users can read the token/);
    assert.deepEqual(byId(report, "netrc_file").fix, [`chmod 600 ${ws.netrcPath}`]);

    // Over curl's 4095-byte netrc token limit.
    await writeNetrc(ws, `machine ${HOST} login nix-cache-login password ${"x".repeat(5000)}\n`);
    ({ report } = await doctorJson(ws));
    assert.ok(problemIds(report).includes("netrc_token"));
    assert.match(
      byId(report, "netrc_token").summary,
      /is 5000 bytes: curl \(>= 8\.11\.1\) drops netrc tokens over 4095 bytes/,
    );
  });

  test("a netrc owned by another user is a problem (needs root to chown it; CI runs as root)", async () => {
    requireRoot("this check");
    const ws = await serviceAccount(bed);
    await chown(ws.netrcPath, 65534, 65534);
    const { report } = await doctorJson(ws);
    // Not read at all (issue 21: the read paths apply the write path's checks), so the cache check
    // has no token of ours to try either.
    assert.deepEqual(problemIds(report), ["netrc_file", "cache"]);
    assert.match(
      byId(report, "netrc_file").summary,
      /the file is owned by uid 65534( \(nobody\))?, not by root .*; nix-cache-login does not use it/,
    );
  });

  test("invalid config is a reported problem (exit 1), not a crash; the Nix checks still run", async () => {
    const ws = await bed.workspace(bed);
    await ws.writeConfig({
      issuer: "http://idp.example.org/realms/x",
      client_id: "c",
      cache_host: HOST,
      netrc_pth: "/x",
    });
    const text = await doctor(ws);
    assert.equal(text.code, 1);
    assert.doesNotMatch(text.stdout + text.stderr, /\bat .*\.(c?js|ts):\d+/, "no stack trace");
    const { report } = await doctorJson(ws);
    assert.equal(report.config_path, null);
    assert.deepEqual(problemIds(report), ["config"]);
    const cfg = byId(report, "config");
    assert.match(cfg.summary, /invalid configuration/);
    assert.ok(
      cfg.details.some((d) => /netrc_pth: unknown key \(did you mean netrc_path\?\)/.test(d)),
      cfg.details.join("\n"),
    );
    assert.ok(
      cfg.details.some((d) => /issuer: must use https/.test(d)),
      cfg.details.join("\n"),
    );
    assert.equal(byId(report, "nix").status, "ok");
    assert.equal(byId(report, "cache").status, "skipped");

    const missing = await bed.workspace(bed);
    const r = await runCli(missing, ["doctor", "--config", join(missing.dir, "nope.toml")]);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /^problem +config +.*nope\.toml: configuration file not found/m);
  });

  test("no nix on PATH: the Nix checks are skipped, and said so", async () => {
    const ws = await serviceAccount(bed);
    const { r, report } = await doctorJson(ws, { PATH: "/nonexistent" });
    assert.equal(r.code, 0);
    const nix = byId(report, "nix");
    assert.equal(nix.status, "skipped");
    assert.equal(nix.summary, "`nix` is not on PATH: the Nix checks were skipped");
    assert.ok(!report.checks.some((c) => c.id === "nix_netrc_file"));
  });

  test("a cache that answers 403 without a token: reported, since Nix would stop asking it for an hour", async () => {
    // The same binary cache behind an Apache that denies (403) before it asks for credentials.
    const realm = bed.realm;
    assert.ok(realm.jwksUriTls !== undefined && realm.caCertPath !== undefined);
    const cache403 = await startProtectedCache({
      cacheDir: bed.cacheDir,
      issuer: realm.issuer,
      jwksUri: realm.jwksUriTls,
      caBundle: realm.caCertPath,
      audience: realm.audience,
      forbidWithoutCredentials: true,
    });
    try {
      const ws = await bed.workspace(bed, { extra: { cache_url: cache403.url } });
      await setNixNetrcFile(bed, ws.netrcPath);
      // The peer: 403 without credentials.
      const bare = await fetch(`${cache403.url}/nix-cache-info`);
      await bare.body?.cancel();
      assert.equal(bare.status, 403);

      // No token yet: the cache check itself says so.
      let { report } = await doctorJson(ws);
      assert.equal(
        byId(report, "cache").summary,
        "the cache answers 403 to a request without a token; it should answer 401",
      );
      assert.match(byId(report, "cache").details.join("\n"), /narinfo-cache-negative-ttl/);
      assert.equal(byId(report, "cache_unauthenticated").status, "problem");

      // With a token the cache lets us in, and the missing-token answer is the one problem left.
      assert.equal((await runCli(ws, ["service-account"])).code, 0);
      ({ report } = await doctorJson(ws));
      assert.deepEqual(problemIds(report), ["cache_unauthenticated"]);
      assert.equal(
        byId(report, "cache_unauthenticated").summary,
        "the cache answers 403 to a request without a token; it should answer 401",
      );
      assert.match(
        byId(report, "cache_unauthenticated").details[0] ?? "",
        /\.narinfo without credentials -> 403$/,
      );
      assert.match(byId(report, "cache_unauthenticated").fix.join("\n"), /answer 401/);
    } finally {
      await cache403.stop();
    }
  });

  test("unreachable cache: the host is named; user not signed in: `login`", async () => {
    const closed = await closedPort();
    const ws = await bed.workspace(bed, { extra: { cache_url: `http://127.0.0.1:${closed}` } });
    assert.equal((await runCli(ws, ["service-account"])).code, 0);
    await setNixNetrcFile(bed, ws.netrcPath);
    const { report } = await doctorJson(ws);
    assert.deepEqual(problemIds(report), ["cache"]);
    assert.equal(
      byId(report, "cache").summary,
      `cannot reach the cache at 127.0.0.1:${closed}: connection refused`,
    );

    const user = await bed.workspace(bed, { user: true });
    await setNixNetrcFile(bed, user.netrcPath);
    const u = await doctorJson(user);
    assert.deepEqual(problemIds(u.report), ["token", "netrc_file", "cache"]);
    assert.match(byId(u.report, "token").summary, /^not signed in/);
    assert.deepEqual(byId(u.report, "token").fix, ["run `nix-cache-login login`"]);
  });
});
