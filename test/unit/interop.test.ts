/**
 * Interoperability rules that do not need a peer to be checked: the token endpoint authentication
 * settings, the Basic credential encoding, network error wording, the libcurl and Determinate
 * verdicts (for installs this machine does not have), and `ps` elapsed times. The peers themselves
 * are in test/e2e/providers.test.ts, netrc-size.test.ts and doctor.test.ts.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { validateConfig } from "../../src/config/load.ts";
import { compareVersions, libcurlCheck, libcurlVersionOf } from "../../src/doctor/libcurl.ts";
import { determinateDaemonCheck, parseElapsed, processStartedAt } from "../../src/doctor/determinate.ts";
import { CliError, ExitCode } from "../../src/errors.ts";
import { parseClientKey } from "../../src/oidc/client-key.ts";
import { describeNetworkError, networkProblem } from "../../src/net/http.ts";
import { basicAuthorization, chooseSecretMethod, formEncodeCredential } from "../../src/oidc/client-auth.ts";
import { redirectPolicyMessage } from "../../src/oidc/client-check.ts";

const BASE = {
  issuer: "https://id.example.org/realms/main",
  client_id: "nix-cache-server",
  cache_host: "c.example.org",
};
const ENV = { HOME: "/home/u" };

function problemsOf(doc: Record<string, unknown>): string {
  try {
    validateConfig({ ...BASE, ...doc }, "/etc/ncl.toml", "test", ENV);
    return "";
  } catch (e) {
    assert.ok(e instanceof CliError);
    assert.equal(e.exitCode, ExitCode.usage);
    return e.message;
  }
}

test("token_endpoint_auth_method and client_key_file: valid combinations and the mode they give", () => {
  const c = (doc: Record<string, unknown>) =>
    validateConfig({ ...BASE, ...doc }, "/etc/ncl.toml", "test", ENV);
  assert.equal(c({}).mode, "user");
  assert.equal(c({}).tokenEndpointAuthMethod, undefined);
  const basic = c({ client_secret_file: "/s" });
  assert.deepEqual([basic.mode, basic.tokenEndpointAuthMethod], ["service-account", undefined]);
  assert.equal(
    c({ client_secret_file: "/s", token_endpoint_auth_method: "client_secret_post" }).tokenEndpointAuthMethod,
    "client_secret_post",
  );
  const jwt = c({ client_key_file: "~/key.pem" });
  assert.deepEqual(
    [jwt.mode, jwt.tokenEndpointAuthMethod, jwt.resolveClientKeyFile()],
    ["service-account", "private_key_jwt", "/home/u/key.pem"],
  );
  assert.equal(
    c({ client_key_file: "/k", token_endpoint_auth_method: "private_key_jwt" }).tokenEndpointAuthMethod,
    "private_key_jwt",
  );
});

test("token_endpoint_auth_method and client_key_file: every wrong combination is named", () => {
  assert.match(
    problemsOf({ client_secret_file: "/s", token_endpoint_auth_method: "client_secret_jwt" }),
    /^\/etc\/ncl\.toml: token_endpoint_auth_method: "client_secret_jwt" is not one of client_secret_basic, client_secret_post, private_key_jwt \(did you mean client_secret_post\?\)$/,
  );
  assert.match(
    problemsOf({ client_secret_file: "/s", client_key_file: "/k" }),
    /client_key_file: set either client_secret_file or client_key_file, not both/,
  );
  assert.match(
    problemsOf({ client_secret_file: "/s", token_endpoint_auth_method: "private_key_jwt" }),
    /private_key_jwt needs client_key_file/,
  );
  assert.match(
    problemsOf({ client_key_file: "/k", token_endpoint_auth_method: "client_secret_basic" }),
    /client_secret_basic sends a client secret; with client_key_file use private_key_jwt/,
  );
  assert.match(
    problemsOf({ token_endpoint_auth_method: "client_secret_basic" }),
    /only for service accounts/,
  );
  assert.match(problemsOf({ client_key_file: 7 }), /client_key_file: must be a string, got a number/);
});

test("the secret method: basic unless the discovery document offers post and not basic", () => {
  assert.equal(chooseSecretMethod(undefined), "client_secret_basic");
  assert.equal(chooseSecretMethod({}), "client_secret_basic");
  assert.equal(chooseSecretMethod({ token_endpoint_auth_methods_supported: [] }), "client_secret_basic");
  assert.equal(
    chooseSecretMethod({
      token_endpoint_auth_methods_supported: ["client_secret_post", "client_secret_basic"],
    }),
    "client_secret_basic",
  );
  assert.equal(
    chooseSecretMethod({ token_endpoint_auth_methods_supported: ["private_key_jwt", "client_secret_post"] }),
    "client_secret_post",
  );
  assert.equal(
    chooseSecretMethod({ token_endpoint_auth_methods_supported: ["private_key_jwt"] }),
    "client_secret_basic",
  );
});

test("Basic credentials: unreserved characters stay as they are, the rest is form-encoded", () => {
  assert.equal(formEncodeCredential("nix-cache-server"), "nix-cache-server");
  assert.equal(formEncodeCredential("A-Za-z0-9-._~"), "A-Za-z0-9-._~");
  // What RFC 6749 2.3.1 (application/x-www-form-urlencoded) requires, as Go's url.QueryEscape does.
  assert.equal(formEncodeCredential("a b:c/d+e%f!'()*é"), "a+b%3Ac%2Fd%2Be%25f%21%27%28%29%2A%C3%A9");
  assert.equal(
    basicAuthorization("nix-cache-server", "s3cret-with.dots_and~tilde"),
    `Basic ${Buffer.from("nix-cache-server:s3cret-with.dots_and~tilde").toString("base64")}`,
  );
  // A `:` in the id cannot be confused with the separator.
  assert.equal(basicAuthorization("a:b", "c"), `Basic ${Buffer.from("a%3Ab:c").toString("base64")}`);
});

test("network failures: a port fetch refuses, plain http behind https, TLS errors", () => {
  const failed = (cause: unknown) => new TypeError("fetch failed", { cause });
  assert.match(
    describeNetworkError(failed(new Error("bad port")), "http://127.0.0.1:6000/x") ?? "",
    /^port 6000 is one Node's fetch refuses to connect to/,
  );
  const tlsOnHttp = Object.assign(new Error("wrong version number"), {
    code: "ERR_SSL_WRONG_VERSION_NUMBER",
  });
  assert.match(describeNetworkError(failed(tlsOnHttp)) ?? "", /does not speak TLS on this port/);
  const other = Object.assign(new Error("alert"), { code: "ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION" });
  assert.equal(
    describeNetworkError(failed(other)),
    "TLS handshake failed (ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION)",
  );
  const notYet = Object.assign(new Error("x"), { code: "CERT_NOT_YET_VALID" });
  assert.match(describeNetworkError(failed(notYet)) ?? "", /not yet valid \(check the system clock\)/);
});

test("network failures get one hint each, the one that fits", () => {
  const failed = (code: string) =>
    new TypeError("fetch failed", { cause: Object.assign(new Error(code), { code }) });
  for (const code of [
    "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
    "DEPTH_ZERO_SELF_SIGNED_CERT",
    "SELF_SIGNED_CERT_IN_CHAIN",
  ]) {
    const p = networkProblem(failed(code));
    assert.doesNotMatch(p?.reason ?? "", /NODE_EXTRA_CA_CERTS/, code);
    assert.match(p?.hint ?? "", /^set NODE_EXTRA_CA_CERTS to the PEM file of the CA/, code);
  }
  assert.match(networkProblem(failed("CERT_NOT_YET_VALID"))?.hint ?? "", /system clock/);
  assert.match(networkProblem(failed("ERR_TLS_CERT_ALTNAME_INVALID"))?.hint ?? "", /host in the issuer URL/);
  assert.match(networkProblem(failed("ECONNREFUSED"))?.hint ?? "", /check the network and the issuer URL/);
  assert.equal(networkProblem(new Error("something else")), undefined);
});

test("Keycloak's page for a redirect URI a client policy refuses: its message, printable; other pages: nothing", () => {
  const page = `<div id="kc-error-message">\n  <p class="instruction">Invalid Redirect Uri: invalid loopback address</p>\n</div>`;
  assert.equal(redirectPolicyMessage(page), "Invalid Redirect Uri: invalid loopback address");
  assert.equal(
    redirectPolicyMessage(
      `<div id="kc-error-message"><p class="instruction">Invalid Redirect Uri: a &amp; b\u001b[31m</p></div>`,
    ),
    "Invalid Redirect Uri: a & b [31m",
  );
  // Keycloak's page for an unregistered one names the parameter instead.
  assert.equal(
    redirectPolicyMessage(
      `<div id="kc-error-message"><p class="instruction">Invalid parameter: redirect_uri</p></div>`,
    ),
    undefined,
  );
  assert.equal(redirectPolicyMessage("<html><p>We are sorry</p></html>"), undefined);
});

test("client keys: PEM (PKCS#8, PKCS#1, SEC1) and JWK with its kid; other kinds are refused", () => {
  const config = validateConfig({ ...BASE, client_key_file: "/k" }, "/etc/ncl.toml", "test", ENV);
  const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey;
  assert.equal(
    parseClientKey(config, rsa.export({ format: "pem", type: "pkcs8" }) as string, "/k").alg,
    "RS256",
  );
  assert.equal(
    parseClientKey(config, rsa.export({ format: "pem", type: "pkcs1" }) as string, "/k").alg,
    "RS256",
  );
  const ec = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
  assert.equal(
    parseClientKey(config, ec.export({ format: "pem", type: "sec1" }) as string, "/k").alg,
    "ES256",
  );
  const ec384 = generateKeyPairSync("ec", { namedCurve: "P-384" }).privateKey;
  assert.equal(
    parseClientKey(config, ec384.export({ format: "pem", type: "pkcs8" }) as string, "/k").alg,
    "ES384",
  );
  const ed = generateKeyPairSync("ed25519").privateKey;
  assert.equal(
    parseClientKey(config, ed.export({ format: "pem", type: "pkcs8" }) as string, "/k").alg,
    "EdDSA",
  );
  const jwk = parseClientKey(config, JSON.stringify({ ...ec.export({ format: "jwk" }), kid: "k1" }), "/k");
  assert.deepEqual([jwk.alg, jwk.kid], ["ES256", "k1"]);
  const secp256k1 = generateKeyPairSync("ec", { namedCurve: "secp256k1" }).privateKey;
  assert.throws(
    () => parseClientKey(config, secp256k1.export({ format: "pem", type: "pkcs8" }) as string, "/k"),
    /client_key_file \/k: a ec key on secp256k1 cannot sign a client assertion/,
  );
  const pub = generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({
    format: "pem",
    type: "spki",
  }) as string;
  assert.throws(() => parseClientKey(config, pub, "/k"), /client_key_file \/k: not a private key/);
});

test("libcurl: the version from a Nix store path, or from the library's own text", async () => {
  const store = await libcurlVersionOf(
    "/nix/store/0c8wn0bxjzbhhvy0dkmvl5ahjbnxbz2n-curl-8.11.0/lib/libcurl.so.4",
  );
  assert.deepEqual([store.version, store.from], ["8.11.0", "store path"]);
  const dir = await mkdtemp(join(tmpdir(), "ncl-libcurl-"));
  try {
    const lib = join(dir, "libcurl.so.4");
    await writeFile(
      lib,
      Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0]), Buffer.from("\0libcurl/7.88.1\0")]),
    );
    const sys = await libcurlVersionOf(lib);
    assert.deepEqual([sys.version, sys.from], ["7.88.1", "library"]);
    await writeFile(lib, "nothing here");
    assert.equal((await libcurlVersionOf(lib)).version, undefined);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  assert.equal((await libcurlVersionOf(join(tmpdir(), "no-such-libcurl.so"))).version, undefined);
});

test("libcurl verdicts: 8.11.0 is a problem (127-byte tokens), older and newer are fine", () => {
  const at = (version: string | undefined) =>
    libcurlCheck({
      path: "/lib/libcurl.so.4",
      version,
      from: version === undefined ? undefined : "library",
      error: version === undefined ? "ldd is not on PATH" : undefined,
    });
  assert.equal(at("8.11.0").status, "problem");
  assert.match(at("8.11.0").summary, /ignores netrc tokens longer than 127 bytes/);
  assert.equal(at("8.11.1").status, "ok");
  assert.match(at("8.11.1").summary, /tokens up to 4095 bytes/);
  assert.equal(at("7.88.1").status, "ok");
  assert.match(at("8.10.1").summary, /netrc lines up to 4095 bytes/);
  assert.equal(at(undefined).status, "note");
  assert.equal(compareVersions("8.9.1", "8.11.0"), -1);
  assert.equal(compareVersions("8.11", "8.11.0"), 0);
  assert.equal(compareVersions("8.12.0", "8.11.1"), 1);
});

test("Determinate daemon: started before the last write is a problem, after is ok, not running a note", () => {
  const written = new Date("2026-11-25T08:00:00Z");
  const check = (startedAt: Date | undefined, netrcWrittenAt: Date | undefined = written) =>
    determinateDaemonCheck({ startedAt, netrcWrittenAt, platform: "linux" }, "/etc/nix/netrc");
  const before = check(new Date("2026-11-25T07:00:00Z"));
  assert.equal(before.status, "problem");
  assert.match(
    before.summary,
    /started at 2026-11-25T07:00:00\.000Z, before \/etc\/nix\/netrc was last written \(2026-11-25T08:00:00\.000Z\)/,
  );
  assert.deepEqual(before.fix, [
    "restart it: `sudo systemctl restart determinate-nixd`",
    "to have that done after each refresh: docs/configure-nix.md#determinate-nix",
  ]);
  // Each platform gets its own command, not the other's.
  const mac = determinateDaemonCheck(
    { startedAt: new Date("2026-11-25T07:00:00Z"), netrcWrittenAt: written, platform: "darwin" },
    "/etc/nix/netrc",
  );
  assert.equal(mac.fix[0], "restart it: `sudo launchctl kickstart -k system/systems.determinate.nix-daemon`");
  // The advice says who can restart it: not the user's refresh timer.
  assert.match(
    before.details.join("\n"),
    /a user's refresh timer and the NixOS server module's unit cannot do it \(they do not run as root\)/,
  );
  // ps counts whole seconds: a start in the same second as the write may have come before it.
  assert.equal(check(new Date("2026-11-25T08:00:00.500Z")).status, "problem");
  assert.equal(check(new Date("2026-11-25T08:00:02Z")).status, "ok");
  assert.equal(check(undefined).status, "note");
  assert.equal(
    determinateDaemonCheck(
      { startedAt: new Date(), netrcWrittenAt: undefined, platform: "linux" },
      "/etc/nix/netrc",
    ).status,
    "skipped",
  );
});

test("ps elapsed times, and a real process found by name with its start", async () => {
  assert.equal(parseElapsed("00:05"), 5);
  assert.equal(parseElapsed("  12:34"), 12 * 60 + 34);
  assert.equal(parseElapsed("01:02:03"), 3723);
  assert.equal(parseElapsed("2-01:02:03"), 2 * 86400 + 3723);
  assert.equal(parseElapsed("garbage"), undefined);

  // A process we start, under a name no other process has: found, and started before now.
  const dir = await mkdtemp(join(tmpdir(), "ncl-ps-"));
  const name = `ncl-daemon-${process.pid}`.slice(0, 15);
  const bin = join(dir, name);
  // The kernel names a process after the file it executed: `sleep` under our own name.
  await symlink("/bin/sleep", bin);
  const child = spawn(bin, ["30"], { stdio: "ignore" });
  try {
    await new Promise((r) => child.once("spawn", r));
    const now = new Date();
    const env = process.env as Record<string, string>;
    // Right after its exec, ps may show the process without a start time yet: ask until it has one.
    let started: Date | undefined;
    for (let i = 0; i < 100 && started === undefined; i++) {
      started = await processStartedAt(name, env, AbortSignal.timeout(10_000), now);
    }
    assert.ok(started !== undefined, "ps found the process");
    assert.ok(started.getTime() <= now.getTime());
    assert.equal(
      await processStartedAt("no-such-process-name", env, AbortSignal.timeout(10_000), now),
      undefined,
    );
  } finally {
    child.kill();
    await rm(dir, { recursive: true, force: true });
  }
});
