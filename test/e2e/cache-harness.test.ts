// End-to-end check of the test bed itself: a real realm (oidc-provider), the real protected cache
// (Apache + mod_auth_openidc) and the real clients (Nix 2.8, curl) reading a netrc. The CLI is not
// involved: tokens come from a plain client_credentials request.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { generateKeyPairSync, sign } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { startProtectedCache, type ProtectedCache } from "../support/cache.ts";
import {
  isValidPath,
  makeBinaryCache,
  makeNixEnv,
  nixStoreDelete,
  nixStoreRealise,
  readStoreFile,
  type NixEnv,
} from "../support/nix.ts";
import { startRealm, type Realm } from "../support/realm.ts";

const FILES = { "hello.txt": "hello from the protected cache\n", "world.txt": "second path\n" };

/** What the cache needs from the realm: its JWKS over https and the CA for it. */
function jwksOf(realm: Realm): { jwksUri: string; caBundle: string } {
  assert.ok(realm.jwksUriTls && realm.caCertPath, "the realm was started without TLS");
  return { jwksUri: realm.jwksUriTls, caBundle: realm.caCertPath };
}

function b64url(data: Buffer | string): string {
  return Buffer.from(data).toString("base64url");
}

async function clientCredentialsToken(realm: Realm): Promise<string> {
  const res = await fetch(`${realm.issuer}/protocol/openid-connect/token`, {
    method: "POST",
    headers: {
      authorization: `Basic ${Buffer.from(`${realm.serviceClientId}:${realm.serviceClientSecret}`).toString("base64")}`,
      "content-type": "application/x-www-form-urlencoded",
    },
    body: new URLSearchParams({ grant_type: "client_credentials" }),
  });
  const body = (await res.json()) as { access_token?: string; error?: string };
  assert.equal(res.status, 200, `token endpoint: ${JSON.stringify(body)}`);
  assert.ok(body.access_token, "no access_token");
  return body.access_token;
}

function jwtParts(token: string): { header: Record<string, unknown>; payload: Record<string, unknown> } {
  const [h, p] = token.split(".");
  assert.ok(h && p, "not a JWT");
  return {
    header: JSON.parse(Buffer.from(h, "base64url").toString()) as Record<string, unknown>,
    payload: JSON.parse(Buffer.from(p, "base64url").toString()) as Record<string, unknown>,
  };
}

/** A JWT with the realm token's header (kid) and claims, signed by a key the realm never had. */
function forgeToken(like: string, claims: Record<string, unknown> = {}): string {
  const { header, payload } = jwtParts(like);
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const input = `${b64url(JSON.stringify({ ...header, alg: "RS256" }))}.${b64url(JSON.stringify({ ...payload, ...claims }))}`;
  return `${input}.${b64url(sign("sha256", Buffer.from(input), privateKey))}`;
}

function curlStatus(
  url: string,
  netrcFile: string | undefined,
): Promise<{ status: number; wwwAuthenticate: string }> {
  const args = ["-sS", "-o", "/dev/null", "-D", "-", "-w", "%{http_code}", "--max-time", "10"];
  if (netrcFile !== undefined) args.push("--netrc-file", netrcFile);
  args.push(url);
  return new Promise((resolve, reject) =>
    execFile("curl", args, (err, stdout) => {
      if (err) return reject(err);
      const status = Number(stdout.slice(-3));
      const m = /^www-authenticate:\s*(.*)$/im.exec(stdout);
      resolve({ status, wwwAuthenticate: m?.[1]?.trim() ?? "" });
    }),
  );
}

describe("protected cache harness (realm + Apache/mod_auth_openidc + Nix 2.8 + curl)", () => {
  let dir: string | undefined;
  let realm: Realm | undefined;
  let nix: NixEnv;
  let cacheDir: string;
  let paths: string[];
  let cache: ProtectedCache | undefined;
  const extraCaches: ProtectedCache[] = [];
  let token: string;

  const netrc = async (name: string, content: string): Promise<string> => {
    assert.ok(dir);
    const file = join(dir, name);
    await writeFile(file, content, { mode: 0o600 });
    return file;
  };
  const ms = (n: number) => `${n.toFixed(0)} ms`;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "cache-harness-"));
    let t = performance.now();
    realm = await startRealm();
    console.log(`realm start ${ms(performance.now() - t)}`);
    nix = await makeNixEnv(join(dir, "nix"));
    cacheDir = join(dir, "binary-cache");
    t = performance.now();
    paths = Object.values(await makeBinaryCache(nix, cacheDir, FILES));
    console.log(`binary cache with ${paths.length} paths ${ms(performance.now() - t)}`);
    t = performance.now();
    cache = await startProtectedCache({
      cacheDir,
      issuer: realm.issuer,
      ...jwksOf(realm),
      audience: realm.audience,
    });
    console.log(`apache start (protected) ${ms(performance.now() - t)} on ${cache.url}`);
    t = performance.now();
    token = await clientCredentialsToken(realm);
    console.log(`client_credentials ${ms(performance.now() - t)}, token ${token.length} bytes`);
  });

  after(async () => {
    // Every step runs even if an earlier one throws.
    const results = await Promise.allSettled([
      ...extraCaches.map((c) => c.stop()),
      cache?.stop() ?? Promise.resolve(),
      realm?.stop() ?? Promise.resolve(),
    ]);
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    for (const r of results) if (r.status === "rejected") throw r.reason;
  });

  it("the token is a JWT for the cache's audience from the realm's issuer", async () => {
    const { payload } = jwtParts(token);
    assert.equal(payload.iss, realm?.issuer);
    const aud = payload.aud;
    assert.ok(aud === realm?.audience || (Array.isArray(aud) && aud.includes(realm?.audience)), `aud ${aud}`);
    // The realm mints no token for another audience (so the wrong-audience test below moves the
    // expectation to the server side instead).
    assert.ok(realm);
    const res = await fetch(`${realm.issuer}/protocol/openid-connect/token`, {
      method: "POST",
      headers: {
        authorization: `Basic ${Buffer.from(`${realm.serviceClientId}:${realm.serviceClientSecret}`).toString("base64")}`,
        "content-type": "application/x-www-form-urlencoded",
      },
      body: new URLSearchParams({ grant_type: "client_credentials", resource: "urn:some-other-cache" }),
    });
    assert.equal(res.status, 400);
    assert.equal(((await res.json()) as { error?: string }).error, "invalid_target");
  });

  it("curl with the token in a netrc gets 200 for /nix-cache-info; without it 401", async () => {
    const good = await netrc("good.netrc", `machine 127.0.0.1 login x password ${token}\n`);
    assert.ok(cache);
    const ok = await curlStatus(`${cache.url}/nix-cache-info`, good);
    assert.equal(ok.status, 200);
    const none = await curlStatus(`${cache.url}/nix-cache-info`, undefined);
    assert.equal(none.status, 401);
    assert.match(none.wwwAuthenticate, /^Bearer /);
    assert.match(none.wwwAuthenticate, /invalid_request/);
    // The body is the cache's own nix-cache-info.
    const res = await fetch(`${cache.url}/nix-cache-info`, {
      headers: { authorization: `Basic ${Buffer.from(`anyone:${token}`).toString("base64")}` },
    });
    assert.equal(res.status, 200);
    assert.match(await res.text(), /^StoreDir: \/nix\/store$/m);
  });

  it("curl: a netrc machine with a port, or localhost, does not match 127.0.0.1 (401)", async () => {
    assert.ok(cache);
    const withPort = await netrc("port.netrc", `machine 127.0.0.1:${cache.port} login x password ${token}\n`);
    assert.equal((await curlStatus(`${cache.url}/nix-cache-info`, withPort)).status, 401);
    const localhost = await netrc("localhost.netrc", `machine localhost login x password ${token}\n`);
    assert.equal((await curlStatus(`${cache.url}/nix-cache-info`, localhost)).status, 401);
  });

  it("nix-store -r substitutes through the protected cache with the token in the netrc", async () => {
    assert.ok(cache);
    const good = await netrc("nix-good.netrc", `machine 127.0.0.1 login x password ${token}\n`);
    for (const p of paths) assert.equal(await isValidPath(nix, p), false, `${p} already in the store`);
    const r = await nixStoreRealise(nix, paths, { substituter: cache.url, netrcFile: good });
    console.log(`nix substitute ${paths.length} paths (protected) ${ms(r.durationMs)}`);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split("\n").sort(), [...paths].sort());
    const contents = await Promise.all(paths.map((p) => readStoreFile(nix, p)));
    assert.deepEqual(contents.sort(), Object.values(FILES).sort());
    // Apache saw the NARs fetched by the token's subject (REMOTE_USER = sub).
    assert.match(cache.accessLog(), /^127\.0\.0\.1 nix-cache-server .*"GET \/nar\/\S+ HTTP\/1\.1" 200 /m);
    await nixStoreDelete(nix, paths);
    for (const p of paths) assert.equal(await isValidPath(nix, p), false);
  });

  it("nix-store -r fails without a matching netrc entry, then works again with one", async () => {
    assert.ok(cache);
    const other = await netrc("other.netrc", `machine cache.example.org login x password ${token}\n`);
    const denied = await nixStoreRealise(nix, paths, { substituter: cache.url, netrcFile: other });
    assert.notEqual(denied.code, 0, "fetched without credentials");
    assert.match(denied.stderr, /don't know how to build|does not appear to be a binary cache/);
    for (const p of paths) assert.equal(await isValidPath(nix, p), false);

    const noFile = await nixStoreRealise(nix, paths, { substituter: cache.url });
    assert.notEqual(noFile.code, 0, "fetched with no netrc at all");

    // The same nix env right after the failures: no cached negative answer may get in the way.
    const good = await netrc("nix-good2.netrc", `machine 127.0.0.1 login x password ${token}\n`);
    const ok = await nixStoreRealise(nix, paths, { substituter: cache.url, netrcFile: good });
    assert.equal(ok.code, 0, ok.stderr);
    await nixStoreDelete(nix, paths);
  });

  it("a token with a tampered signature, a forged key or tampered claims gets 401", async () => {
    assert.ok(cache);
    const [h, p, s] = token.split(".");
    assert.ok(h && p && s);
    const flipped = `${h}.${p}.${s.slice(0, 10)}${s[10] === "A" ? "B" : "A"}${s.slice(11)}`;
    const { payload } = jwtParts(token);
    const otherSub = `${h}.${b64url(JSON.stringify({ ...payload, sub: "someone-else" }))}.${s}`;
    const forged = forgeToken(token);
    const algNone = `${b64url(JSON.stringify({ alg: "none", typ: "at+jwt" }))}.${p}.`;
    for (const [name, bad] of [
      ["flipped signature", flipped],
      ["changed claims", otherSub],
      ["unknown key", forged],
      ["alg none", algNone],
    ] as const) {
      const f = await netrc(
        `bad-${name.replace(/ /g, "-")}.netrc`,
        `machine 127.0.0.1 login x password ${bad}\n`,
      );
      const logBefore = cache.errorLog().length;
      const r = await curlStatus(`${cache.url}/nix-cache-info`, f);
      assert.equal(r.status, 401, name);
      assert.match(r.wwwAuthenticate, /invalid_token/, name);
      assert.match(cache.errorLog().slice(logBefore), /JWT signature verification failed/, name);
    }
    // Nix sees the same rejection.
    const f = await netrc("nix-forged.netrc", `machine 127.0.0.1 login x password ${forged}\n`);
    const r = await nixStoreRealise(nix, paths, { substituter: cache.url, netrcFile: f });
    assert.notEqual(r.code, 0);
    for (const p2 of paths) assert.equal(await isValidPath(nix, p2), false);
  });

  it("a token for another audience or issuer gets 401", async () => {
    assert.ok(realm);
    // The realm only mints urn:nix-cache tokens (any other `resource` is invalid_target), so the
    // other audience is on the server's side: a cache for urn:some-other-cache must refuse them.
    const otherAud = await startProtectedCache({
      cacheDir,
      issuer: realm.issuer,
      ...jwksOf(realm),
      audience: "urn:some-other-cache",
    });
    extraCaches.push(otherAud);
    // ... and so does one that expects another issuer (same keys, so only `iss` differs).
    const otherIss = await startProtectedCache({
      cacheDir,
      issuer: "http://127.0.0.1:1/realms/other",
      ...jwksOf(realm),
      audience: realm.audience,
    });
    extraCaches.push(otherIss);
    const good = await netrc("aud.netrc", `machine 127.0.0.1 login x password ${token}\n`);
    for (const [other, expected] of [
      [otherAud, "aud:urn:some-other-cache"],
      [otherIss, "iss:http://127.0.0.1:1/realms/other"],
    ] as const) {
      const r = await curlStatus(`${other.url}/nix-cache-info`, good);
      assert.equal(r.status, 401, expected);
      // The signature was fine (same realm, same token as the 200s above): the claim check refused it.
      assert.ok(
        other.errorLog().includes(`could not match require claim expression '${expected}'`),
        other.errorLog(),
      );
    }
    const r = await nixStoreRealise(nix, paths, { substituter: otherAud.url, netrcFile: good });
    assert.notEqual(r.code, 0, "nix fetched from a cache for another audience");
    for (const p of paths) assert.equal(await isValidPath(nix, p), false);
  });

  it("the unprotected variant serves the same cache without credentials", async () => {
    let t = performance.now();
    const open = await startProtectedCache({ cacheDir, protected: false });
    extraCaches.push(open);
    console.log(`apache start (unprotected) ${ms(performance.now() - t)}`);
    assert.equal((await curlStatus(`${open.url}/nix-cache-info`, undefined)).status, 200);
    const r = await nixStoreRealise(nix, paths, { substituter: open.url });
    console.log(`nix substitute ${paths.length} paths (unprotected) ${ms(r.durationMs)}`);
    assert.equal(r.code, 0, r.stderr);
    const contents = await Promise.all(paths.map((p) => readStoreFile(nix, p)));
    assert.deepEqual(contents.sort(), Object.values(FILES).sort());
    assert.match(open.accessLog(), /"GET \/nar\/[^ ]+ HTTP\/1\.1" 200 /);
    await nixStoreDelete(nix, paths);
    t = performance.now();
    await open.stop();
    console.log(`apache stop ${ms(performance.now() - t)}`);
  });
});
