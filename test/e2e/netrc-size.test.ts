/**
 * Large access tokens and curl's netrc limits, end to end: the realm pads its access tokens (as a
 * Keycloak realm with many groups does), the CLI writes them, and this machine's curl (7.88, the
 * libcurl Debian's Nix 2.8 uses too) and Nix read the netrc, with an unrelated entry after ours.
 *
 * curl up to 8.10 reads the netrc a line at a time into a 4096-byte buffer: a line of more than
 * 4095 bytes (line break included) is not read, and the entry on it has no password, silently.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { netrcPassword, runCli, snapshot, type Workspace } from "../support/cli.ts";
import {
  HOST,
  assertNixFetches,
  assertNixRefused,
  curl,
  startBed,
  writeNetrc,
  type Bed,
} from "../support/protected-bed.ts";

const UNRELATED_HOST = "unrelated.example";
const UNRELATED = `machine ${UNRELATED_HOST}\nlogin someone\npassword unrelated-pass\n`;
const TARGET = 4050;

let bed: Bed;
let echo: http.Server;
let echoPort: number;
let lastAuth: string | undefined;
let curlVersion: string;

before(async () => {
  curlVersion = (await promisify(execFile)("curl", ["--version"])).stdout.split("\n")[0] ?? "";
  bed = await startBed({ accessTokenTTL: 300 });
  // A second server that only records the credentials curl sends: for the unrelated entry.
  echo = http.createServer((req, res) => {
    lastAuth = req.headers.authorization;
    res.end("ok");
  });
  await new Promise<void>((r) => echo.listen(0, "127.0.0.1", r));
  echoPort = (echo.address() as AddressInfo).port;
});

after(async () => {
  await new Promise((r) => echo?.close(r));
  await bed?.stop();
});

/** What curl sends to the unrelated host from this netrc, as "login:password", or null. */
async function unrelatedCreds(netrcFile: string): Promise<string | null> {
  lastAuth = undefined;
  const r = await curl(
    `http://${UNRELATED_HOST}:${echoPort}/`,
    netrcFile,
    `${UNRELATED_HOST}:${echoPort}:127.0.0.1`,
  );
  assert.equal(r.status, 200);
  // Set by the server's handler meanwhile (the compiler cannot see that).
  const auth = lastAuth as string | undefined;
  return auth === undefined ? null : Buffer.from(auth.replace(/^Basic /, ""), "base64").toString();
}

async function tokenOf(ws: Workspace): Promise<string> {
  const t = netrcPassword(await readFile(ws.netrcPath, "latin1"), HOST);
  assert.ok(t !== undefined, "no token in the netrc");
  return t;
}

/** The `groups` padding that makes the realm's next access token exactly `bytes` long. */
function paddingFor(token: string, currentPadding: number, bytes: number): number {
  const [header, payload, signature] = token.split(".") as [string, string, string];
  const json = Buffer.from(payload, "base64url").toString("utf8").length;
  // Base64url without padding: n bytes -> ceil(4n/3) characters; the claim adds `,"groups":"..."`.
  const wantChars = bytes - header.length - signature.length - 2;
  assert.notEqual(wantChars % 4, 1, `a ${bytes}-byte token is not reachable`);
  const wantJson = Math.floor((wantChars * 3) / 4);
  const claimOverhead = currentPadding > 0 ? 0 : ',"groups":""'.length;
  return currentPadding + (wantJson - json) - claimOverhead;
}

test(`a ${TARGET}-byte token: written on its own line, read by ${"curl"} and Nix, the unrelated entry after it still works`, async (t) => {
  t.diagnostic(curlVersion);
  const ws = await bed.workspace(bed);
  // An existing one-line entry for the cache (as nix-cache-login wrote before) and an unrelated one after it.
  await writeNetrc(ws, `machine ${HOST} login nix-cache-login password old-token\n${UNRELATED}`);
  bed.realm.setAccessTokenPadding(0);
  assert.equal((await runCli(ws, ["service-account"])).code, 0);
  const small = await tokenOf(ws);
  bed.realm.setAccessTokenPadding(paddingFor(small, 0, TARGET));
  try {
    const r = await runCli(ws, ["service-account"]);
    assert.equal(r.code, 0, r.stderr);
    const token = await tokenOf(ws);
    assert.equal(Buffer.byteLength(token), TARGET, "the realm issued a token of the size under test");
    t.diagnostic(`token ${token.length} bytes`);
    // Over 3 KB: a warning that names the cure.
    assert.match(
      r.stderr,
      new RegExp(`the access token for ${HOST.replace(/\./g, "\\.")} is ${TARGET} bytes`),
    );
    assert.match(r.stderr, /lightweight access token/);

    const netrc = await readFile(ws.netrcPath, "latin1");
    assert.equal(netrc, `machine ${HOST}\nlogin nix-cache-login\npassword ${token}\n${UNRELATED}`);
    const longest = Math.max(...netrc.split("\n").map((l) => Buffer.byteLength(l) + 1));
    assert.equal(longest, `password ${token}\n`.length);
    assert.ok(longest <= 4095, `the token's line is ${longest} bytes`);

    // curl 7.88 reads it: the cache (mod_auth_openidc) accepts the token, the unrelated entry works.
    assert.equal((await curl(`${bed.cache.url}/nix-cache-info`, ws.netrcPath)).status, 200);
    assert.equal(await unrelatedCreds(ws.netrcPath), "someone:unrelated-pass");
    // And so does Nix (2.8, on the same libcurl).
    await assertNixFetches(bed, bed.cache, ws.netrcPath, `Nix with a ${TARGET}-byte token`);

    // The same token in a one-line entry (4100 bytes with its line break): curl 7.88 skips that
    // line, so our entry has no password and the cache says 401 (the unrelated entry, on lines
    // of its own, still works). This is what the multi-line form prevents.
    const oneLine = `machine ${HOST} login nix-cache-login password ${token}\n${UNRELATED}`;
    assert.equal(Buffer.byteLength(oneLine.split("\n")[0] as string) + 1, 4100);
    await writeNetrc(ws, oneLine);
    assert.equal((await curl(`${bed.cache.url}/nix-cache-info`, ws.netrcPath)).status, 401);
    assert.equal(await unrelatedCreds(ws.netrcPath), "someone:unrelated-pass");
    await assertNixRefused(bed, bed.cache, ws.netrcPath, "Nix with the one-line entry");
    // doctor names the line; refreshing rewrites the entry on three lines.
    const d = await runCli(ws, ["doctor", "--json"], { env: { NIX_CONF_DIR: bed.nix.confDir } });
    const lines = (
      JSON.parse(d.stdout) as { checks: { id: string; status: string; summary: string }[] }
    ).checks.find((c) => c.id === "netrc_lines");
    assert.equal(lines?.status, "problem");
    assert.match(lines?.summary ?? "", /^line 1 is 4100 bytes: curl up to 8\.10/);
    assert.equal((await runCli(ws, ["service-account"])).code, 0);
    assert.equal((await curl(`${bed.cache.url}/nix-cache-info`, ws.netrcPath)).status, 200);
    assert.equal(await unrelatedCreds(ws.netrcPath), "someone:unrelated-pass");
  } finally {
    bed.realm.setAccessTokenPadding(0);
  }
});

test("a token whose password line would pass 4095 bytes is refused, and every file is left as it was", async (t) => {
  t.diagnostic(curlVersion);
  const ws = await bed.workspace(bed);
  await writeNetrc(ws, UNRELATED);
  bed.realm.setAccessTokenPadding(0);
  assert.equal((await runCli(ws, ["service-account"])).code, 0);
  const small = await tokenOf(ws);
  const before = await snapshot(ws.home);
  // 4086 bytes: `password ` + token + CRLF is 4097, over curl's 4095 (4085 would fit only with LF).
  const size = 4086;
  bed.realm.setAccessTokenPadding(paddingFor(small, 0, size));
  try {
    const r = await runCli(ws, ["service-account"]);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      new RegExp(
        `the access token for ${HOST.replace(/\./g, "\\.")} is ${size} bytes; its netrc line would be`,
      ),
    );
    assert.match(r.stderr, /lightweight access token/);
    assert.match(r.stderr, /the netrc was left unchanged/);
    assert.deepEqual(await snapshot(ws.home), before);
    assert.equal(await unrelatedCreds(ws.netrcPath), "someone:unrelated-pass");
  } finally {
    bed.realm.setAccessTokenPadding(0);
  }
});
