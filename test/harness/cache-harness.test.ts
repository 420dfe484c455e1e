// Smoke test of the test bed itself: the realm (oidc-provider), the protected cache (Apache +
// mod_auth_openidc) and the real clients (Nix 2.8, curl) reading a netrc. The CLI is not involved:
// the token comes from a plain client_credentials request; bad tokens are made with the realm's key.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { generateKeyPairSync, sign } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { assertNixFetches, assertNixRefused, startBed, type Bed } from "../support/protected-bed.ts";

let bed: Bed;
let token: string;

before(async () => {
  bed = await startBed();
  const res = await fetch(`${bed.realm.issuer}/protocol/openid-connect/token`, {
    method: "POST",
    headers: {
      authorization: `Basic ${Buffer.from(`${bed.realm.serviceClientId}:${bed.realm.serviceClientSecret}`).toString("base64")}`,
    },
    body: new URLSearchParams({ grant_type: "client_credentials" }),
  });
  const body = (await res.json()) as { access_token?: string };
  assert.equal(res.status, 200, JSON.stringify(body));
  assert.ok(body.access_token);
  token = body.access_token;
});

after(async () => {
  await bed?.stop();
});

async function netrc(name: string, password: string, machine = "127.0.0.1"): Promise<string> {
  const file = join(bed.dir, `${name}.netrc`);
  await writeFile(file, `machine ${machine} login x password ${password}\n`, { mode: 0o600 });
  return file;
}

function curlStatus(url: string, netrcFile?: string): Promise<{ status: number; wwwAuthenticate: string }> {
  const args = ["-sS", "-o", "/dev/null", "-D", "-", "-w", "%{http_code}", "--max-time", "10"];
  if (netrcFile !== undefined) args.push("--netrc-file", netrcFile);
  args.push(url);
  return new Promise((resolve, reject) =>
    execFile("curl", args, (err, stdout) => {
      if (err) return reject(err);
      const m = /^www-authenticate:\s*(.*)$/im.exec(stdout);
      resolve({ status: Number(stdout.slice(-3)), wwwAuthenticate: m?.[1]?.trim() ?? "" });
    }),
  );
}

test("a realm token in a netrc gets curl and nix-store through; no token gets 401", async () => {
  const good = await netrc("good", token);
  assert.equal((await curlStatus(`${bed.cache.url}/nix-cache-info`, good)).status, 200);
  const none = await curlStatus(`${bed.cache.url}/nix-cache-info`);
  assert.equal(none.status, 401);
  assert.match(none.wwwAuthenticate, /^Bearer .*invalid_request/);
  await assertNixFetches(bed, bed.cache, good, "realm token");
  await assertNixRefused(bed, bed.cache, join(bed.dir, "no-such.netrc"), "no netrc");
  // curl matches the machine name on the host only: a port or `localhost` does not match 127.0.0.1.
  const withPort = await netrc("port", token, `127.0.0.1:${bed.cache.port}`);
  assert.equal((await curlStatus(`${bed.cache.url}/nix-cache-info`, withPort)).status, 401);
});

test("tampered, forged, expired, wrong-audience and wrong-issuer tokens get 401", async () => {
  const [h = "", p = "", s = ""] = token.split(".");
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const forgedInput = `${h}.${p}`;
  const now = Math.floor(Date.now() / 1000);
  const bad: [string, string, RegExp][] = [
    [
      "flipped signature",
      `${h}.${p}.${s[0] === "A" ? "B" : "A"}${s.slice(1)}`,
      /JWT signature verification failed/,
    ],
    [
      "unknown key",
      `${forgedInput}.${sign("sha256", Buffer.from(forgedInput), privateKey).toString("base64url")}`,
      /JWT signature verification failed/,
    ],
    ["expired", bed.realm.withClaims(token, { exp: now - 60 }), /expired/i],
    ["other audience", bed.realm.withClaims(token, { aud: "urn:other-cache" }), /aud:urn:nix-cache/],
    ["other issuer", bed.realm.withClaims(token, { iss: "http://127.0.0.1:1/realms/other" }), /iss:/],
  ];
  for (const [name, value, logged] of bad) {
    const from = bed.cache.errorLog().length;
    const r = await curlStatus(
      `${bed.cache.url}/nix-cache-info`,
      await netrc(name.replace(/ /g, "-"), value),
    );
    assert.equal(r.status, 401, name);
    // A bad token is invalid_token; a good one with the wrong claims is refused by `Require claim`.
    if (!name.startsWith("other")) assert.match(r.wwwAuthenticate, /invalid_token/, name);
    // Why, from mod_auth_openidc (Apache may write the line just after the response).
    for (let i = 0; i < 100 && !logged.test(bed.cache.errorLog().slice(from)); i++)
      await new Promise((r) => setTimeout(r, 50));
    assert.match(bed.cache.errorLog().slice(from), logged, name);
  }
  await assertNixRefused(
    bed,
    bed.cache,
    await netrc("nix-expired", bed.realm.withClaims(token, { exp: now - 60 })),
    "expired",
  );
});
