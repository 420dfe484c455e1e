/**
 * Beyond the Keycloak-shaped realm: Glewlwyd (Debian 12's packaged OpenID Provider, a C server
 * that does not form-decode HTTP Basic client credentials and answers an unknown client with 403
 * and an empty body) for every token_endpoint_auth_method, and providers that answer with HTML,
 * with a differently written issuer, on a port Node refuses, without TLS, or with an untrusted
 * certificate: each gets one line that says what happened.
 */
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { makeWorkspace, netrcPassword, runCli, snapshot, type Workspace } from "../support/cli.ts";
import { GLEWLWYD_SCOPE, startGlewlwyd, type Glewlwyd } from "../support/glewlwyd.ts";
import { startRealm, type Realm } from "../support/realm.ts";

const HOST = "127.0.0.1";
// Unreserved characters only: what both kinds of server accept in Basic credentials.
const SECRET = "s3cret-with.dots_and~tilde";
const METHODS = [
  "client_secret_basic",
  "client_secret_post",
  "private_key_jwt",
  "private_key_jwt (EC P-256)",
] as const;

const workspaces: Workspace[] = [];
after(async () => {
  for (const ws of workspaces) await ws.cleanup();
});

async function workspace(config: Record<string, unknown>): Promise<Workspace> {
  const ws = await makeWorkspace();
  workspaces.push(ws);
  await ws.writeConfig({ cache_host: HOST, ...config });
  return ws;
}

async function secretFile(ws: Workspace, secret: string): Promise<string> {
  const file = join(ws.dir, "client-secret");
  await writeFile(file, `${secret}\n`, { mode: 0o600 });
  ws.secrets.add(secret);
  return file;
}

function claims(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split(".")[1] ?? "", "base64url").toString("utf8")) as Record<
    string,
    unknown
  >;
}

/** stderr is `error: <one line>`, at most a `hint: <one line>`, and at most the `see: <page>` line. */
function oneLineError(stderr: string): string {
  const lines = stderr.trimEnd().split("\n");
  assert.match(lines[0] ?? "", /^error: /, stderr);
  const rest = lines.slice(1);
  if (rest[0]?.startsWith("hint: ") === true) rest.shift();
  if (rest[0]?.startsWith("see: docs/") === true) rest.shift();
  assert.deepEqual(rest, [], stderr);
  return stderr;
}

describe("Glewlwyd 2.7 (Debian), a provider that does not decode Basic credentials", () => {
  let g: Glewlwyd;
  const clients: Record<(typeof METHODS)[number], string> = {
    client_secret_basic: "nix-cache-basic",
    client_secret_post: "nix-cache-post",
    private_key_jwt: "nix-cache-jwt",
    "private_key_jwt (EC P-256)": "nix-cache-jwt-ec",
  };
  const keyPems: Partial<Record<(typeof METHODS)[number], string>> = {};

  before(async () => {
    g = await startGlewlwyd();
    const keys = g.keyPair("rsa");
    keyPems.private_key_jwt = keys.privatePem;
    const ecKeys = g.keyPair("ec");
    keyPems["private_key_jwt (EC P-256)"] = ecKeys.privatePem;
    // Each client may use only its own method, so a request with another one is refused.
    await g.addClient({
      clientId: clients.client_secret_basic,
      secret: SECRET,
      authMethods: ["client_secret_basic"],
    });
    await g.addClient({
      clientId: clients.client_secret_post,
      secret: SECRET,
      authMethods: ["client_secret_post"],
    });
    await g.addClient({
      clientId: clients.private_key_jwt,
      publicKeyPem: keys.publicPem,
      authMethods: ["private_key_jwt"],
    });
    await g.addClient({
      clientId: clients["private_key_jwt (EC P-256)"],
      publicKeyPem: ecKeys.publicPem,
      authMethods: ["private_key_jwt"],
    });
  });
  after(async () => {
    await g?.stop();
  });

  test("the peer: raw Basic credentials get a token, form-encoded ones (nix%2Dcache%2Dbasic) a bare 403", async () => {
    const meta = (await (await fetch(`${g.issuer}/.well-known/openid-configuration`)).json()) as {
      token_endpoint: string;
    };
    const ask = (user: string, pass: string) =>
      fetch(meta.token_endpoint, {
        method: "POST",
        headers: {
          authorization: `Basic ${Buffer.from(`${user}:${pass}`).toString("base64")}`,
          "content-type": "application/x-www-form-urlencoded",
        },
        body: `grant_type=client_credentials&scope=${GLEWLWYD_SCOPE}`,
      });
    const raw = await ask(clients.client_secret_basic, SECRET);
    assert.equal(raw.status, 200);
    await raw.body?.cancel();
    // What openid-client sends by itself (RFC 6749 2.3.1 form encoding, `-` `.` `_` `~` included).
    const enc = (s: string) =>
      encodeURIComponent(s).replace(/[-_.~]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
    const encoded = await ask(enc(clients.client_secret_basic), enc(SECRET));
    assert.equal(encoded.status, 403);
    assert.equal(await encoded.text(), "");
  });

  for (const method of METHODS) {
    test(`service-account and refresh with ${method}`, async () => {
      const ws = await workspace({ issuer: g.issuer, client_id: clients[method], scopes: [GLEWLWYD_SCOPE] });
      const keyPem = keyPems[method];
      const extra: Record<string, unknown> =
        keyPem !== undefined
          ? { client_key_file: join(ws.dir, "client-key.pem") }
          : { client_secret_file: await secretFile(ws, SECRET), token_endpoint_auth_method: method };
      if (keyPem !== undefined) {
        await writeFile(extra.client_key_file as string, keyPem, { mode: 0o600 });
        ws.secrets.add(keyPem.split("\n")[1] ?? "");
      }
      await ws.writeConfig({
        issuer: g.issuer,
        client_id: clients[method],
        cache_host: HOST,
        scopes: [GLEWLWYD_SCOPE],
        ...extra,
      });

      const first = await runCli(ws, ["service-account", "--verbose"]);
      assert.equal(first.code, 0, first.stderr);
      assert.match(
        first.stderr,
        new RegExp(
          `client authentication: ${keyPem === undefined ? method : `private_key_jwt \\((RS|ES)256\\)`}`,
        ),
      );
      const netrc = await import("node:fs/promises").then((f) => f.readFile(ws.netrcPath, "utf8"));
      const token = netrcPassword(netrc, HOST);
      assert.ok(token !== undefined);
      assert.equal(claims(token).client_id, clients[method]);
      assert.equal(claims(token).iss, g.issuer);

      // `refresh` with a service-account configuration asks again, with the same method.
      const second = await runCli(ws, ["refresh"]);
      assert.equal(second.code, 0, second.stderr);
      const token2 = netrcPassword(
        await import("node:fs/promises").then((f) => f.readFile(ws.netrcPath, "utf8")),
        HOST,
      );
      assert.ok(token2 !== undefined && token2 !== token);
      assert.equal(claims(token2).client_id, clients[method]);
    });
  }

  test("client_secret_basic is the default: a client id with `-` works without the key set", async () => {
    const ws = await workspace({
      issuer: g.issuer,
      client_id: clients.client_secret_basic,
      scopes: [GLEWLWYD_SCOPE],
    });
    await ws.writeConfig({
      issuer: g.issuer,
      client_id: clients.client_secret_basic,
      cache_host: HOST,
      scopes: [GLEWLWYD_SCOPE],
      client_secret_file: await secretFile(ws, SECRET),
    });
    const r = await runCli(ws, ["service-account"]);
    assert.equal(r.code, 0, r.stderr);
  });

  test("a refused client (wrong method, wrong secret): HTTP 403 from host and path, exit 2, nothing written", async () => {
    for (const [method, secret] of [
      ["client_secret_post", SECRET],
      ["client_secret_basic", "wrong-secret"],
    ] as const) {
      const ws = await workspace({ issuer: g.issuer, client_id: clients.client_secret_basic });
      await ws.writeConfig({
        issuer: g.issuer,
        client_id: clients.client_secret_basic,
        cache_host: HOST,
        scopes: [GLEWLWYD_SCOPE],
        client_secret_file: await secretFile(ws, secret),
        token_endpoint_auth_method: method,
      });
      const before = await snapshot(ws.home);
      const r = await runCli(ws, ["service-account"]);
      assert.equal(r.code, 2, r.stderr);
      oneLineError(r.stderr);
      assert.match(
        r.stderr,
        new RegExp(
          `^error: client credentials grant: HTTP 403 from ${HOST}:${g.port} /api/oidc/token \\(empty body\\)$`,
          "m",
        ),
      );
      assert.match(r.stderr, /^hint: .*token_endpoint_auth_method/m);
      assert.deepEqual(await snapshot(ws.home), before);
    }
  });

  test("private_key_jwt with a file that holds no key: a configuration error before any request", async () => {
    const ws = await workspace({ issuer: g.issuer, client_id: clients.private_key_jwt });
    const keyFile = join(ws.dir, "client-key.pem");
    await writeFile(keyFile, "not a key\n", { mode: 0o600 });
    await ws.writeConfig({
      issuer: g.issuer,
      client_id: clients.private_key_jwt,
      cache_host: HOST,
      client_key_file: keyFile,
    });
    const r = await runCli(ws, ["service-account"]);
    assert.equal(r.code, 2);
    oneLineError(r.stderr);
    assert.match(r.stderr, new RegExp(`^error: client_key_file ${keyFile}: not a private key`, "m"));
  });
});

describe("answers that are not OAuth: one line each, with the status, host and path", () => {
  let server: http.Server;
  let port: number;
  let realm: Realm;

  before(async () => {
    realm = await startRealm();
    // A provider behind a misconfigured proxy: HTML error pages where JSON was expected.
    server = http.createServer((req, res) => {
      const path = new URL(req.url ?? "/", "http://x").pathname;
      const status = /^\/(\d{3})\//.exec(path)?.[1];
      if (path.endsWith("/.well-known/openid-configuration") && path.startsWith("/token403/")) {
        const issuer = `http://${HOST}:${port}/token403/realms/x`;
        res.setHeader("content-type", "application/json");
        res.end(
          JSON.stringify({
            issuer,
            token_endpoint: `${issuer}/protocol/openid-connect/token`,
            jwks_uri: `${issuer}/certs`,
          }),
        );
        return;
      }
      res.statusCode = status !== undefined ? Number(status) : path.startsWith("/token403/") ? 403 : 404;
      res.setHeader("content-type", "text/html; charset=utf-8");
      res.end(`<!DOCTYPE html><html><body><h1>${res.statusCode}</h1><p>nginx</p></body></html>`);
    });
    await new Promise<void>((r) => server.listen(0, HOST, r));
    port = (server.address() as AddressInfo).port;
  });
  after(async () => {
    await new Promise((r) => server?.close(r));
    await realm?.stop();
  });

  async function serviceAccount(issuer: string, env: Record<string, string> = {}) {
    const ws = await workspace({ issuer, client_id: "nix-cache-server" });
    await ws.writeConfig({
      issuer,
      client_id: "nix-cache-server",
      cache_host: HOST,
      client_secret_file: await secretFile(ws, SECRET),
    });
    const before = await snapshot(ws.home);
    const r = await runCli(ws, ["service-account"], { env });
    assert.deepEqual(await snapshot(ws.home), before, "nothing was written");
    oneLineError(r.stderr);
    return r;
  }

  for (const [status, exit, hint] of [
    [403, 1, /something in front of the provider/],
    [404, 2, /check issuer in .*: it must point at the realm/],
    [500, 1, /the provider has a problem/],
  ] as const) {
    test(`discovery answered ${status} with an HTML page`, async () => {
      const r = await serviceAccount(`http://${HOST}:${port}/${status}/realms/x`);
      assert.equal(r.code, exit);
      assert.match(
        r.stderr,
        new RegExp(
          `^error: discovery: HTTP ${status} from ${HOST}:${port} /${status}/realms/x/\\.well-known/openid-configuration \\(an HTML page\\)$`,
          "m",
        ),
      );
      assert.match(r.stderr, hint);
    });
  }

  test("the token endpoint answered 403 with an HTML page", async () => {
    const r = await serviceAccount(`http://${HOST}:${port}/token403/realms/x`);
    assert.equal(r.code, 2);
    assert.match(
      r.stderr,
      new RegExp(
        `^error: client credentials grant: HTTP 403 from ${HOST}:${port} /token403/realms/x/protocol/openid-connect/token \\(an HTML page\\)$`,
        "m",
      ),
    );
  });

  test("an issuer written with a trailing slash: both values, and which to write", async () => {
    const r = await serviceAccount(`${realm.issuer}/`);
    assert.equal(r.code, 2);
    assert.match(
      r.stderr,
      new RegExp(
        `^error: .*config\\.toml: issuer: "${realm.issuer}/" does not match the issuer the provider names, "${realm.issuer}"$`,
        "m",
      ),
    );
    assert.match(
      r.stderr,
      new RegExp(`^hint: write issuer = "${realm.issuer}" \\(without the trailing slash\\)`, "m"),
    );
  });

  test("a port Node's fetch refuses (9): our requests do not go through fetch, so it is a plain refusal", async () => {
    const r = await serviceAccount(`http://${HOST}:9/realms/x`);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`^error: cannot reach ${HOST}:9: connection refused$`, "m"));
  });

  test("https to a plain http server", async () => {
    const r = await serviceAccount(`https://${HOST}:${realm.port}/realms/test`);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      new RegExp(
        `^error: cannot reach ${HOST}:${realm.port}: the server does not speak TLS on this port`,
        "m",
      ),
    );
  });

  test("a self-signed certificate that is not trusted", async () => {
    assert.ok(realm.tlsIssuerBase !== undefined && realm.caCertPath !== undefined);
    const r = await serviceAccount(realm.tlsIssuerBase);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /^error: cannot reach 127\.0\.0\.1:\d+: TLS certificate is self-signed \(set NODE_EXTRA_CA_CERTS\)$/m,
    );
  });
});
