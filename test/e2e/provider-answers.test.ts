/**
 * Issue 20: a huge or endless answer never costs memory, time or files. A hostile provider
 * (test/support/hostile-provider.ts) and a cache of our own send 5 MB, 40 MB and endless bodies to
 * every request whose answer the CLI reads (discovery, token, device authorization, logout,
 * doctor's cache probe); the built CLI runs under GNU time (`/usr/bin/time -v`, Debian's `time`)
 * and must stay under 100 MiB peak RSS, end by itself within its timeout with one line naming the
 * host, the endpoint and the cap, and leave every file as it was. Malformed token answers
 * (garbage, cut-off JSON, no token) get one line naming the endpoint, and an answer refused after
 * the provider rotated the refresh token leaves the new refresh token saved.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { after, afterEach, before, describe, test } from "node:test";
import { StateStore } from "../../src/store/state.ts";
import { writeState } from "../../src/store/write.ts";
import { runCli, snapshot, type RunResult, type Workspace } from "../support/cli.ts";
import { hostileWorkspace } from "../support/realm-workspaces.ts";
import { sendPadded, startHostileProvider, type HostileProvider } from "../support/hostile-provider.ts";

const HOST = "127.0.0.1";
const KEEP = "machine other.example login someone password keep-me\n";
/** The CLI's timeout (config `timeout`); the test's own kill comes later. */
const TIMEOUT_S = 10;
const SIZES: { name: string; size: number | "endless" }[] = [
  { name: "5 MB", size: 5_000_000 },
  { name: "40 MB", size: 40_000_000 },
  { name: "endless", size: "endless" },
];

let op: HostileProvider;
let cache: { url: string; size: number | "endless"; stop(): Promise<void> };
const workspaces: Workspace[] = [];
/** Peak RSS per case, for the closing note. */
const peaks: string[] = [];

before(async () => {
  if (!existsSync("/usr/bin/time")) {
    throw new Error("GNU time is not installed: `apt-get install -y --no-install-recommends time`");
  }
  op = await startHostileProvider();
  cache = await startCache();
});

// Each test's hostile answers end with it: a test meets the provider as it was at the start.
afterEach(() => {
  for (const path of ["/.well-known/openid-configuration", "/token", "/device", "/logout"]) op.off(path);
});

after(async () => {
  for (const p of peaks) console.log(`peak RSS ${p}`);
  await op.stop();
  await cache.stop();
  await Promise.all(workspaces.map((ws) => ws.cleanup()));
});

/** A binary cache that answers /nix-cache-info with a valid start and `size` bytes of padding. */
async function startCache(): Promise<typeof cache> {
  const c = {
    url: "",
    size: 0 as number | "endless",
    stop: (): Promise<void> => Promise.resolve(),
  };
  const server = http.createServer((req, res) => {
    res.writeHead(200, { "content-type": "text/x-nix-cache-info" });
    sendPadded(res, "StoreDir: /nix/store\n", { fill: "WantMassQuery: 1\n", size: c.size });
  });
  await new Promise<void>((r) => server.listen(0, HOST, r));
  c.url = `http://${HOST}:${(server.address() as AddressInfo).port}`;
  c.stop = () =>
    new Promise<void>((r) => {
      server.close(() => r());
      server.closeAllConnections();
    });
  return c;
}

async function workspace(mode: "service" | "user"): Promise<Workspace> {
  const ws = await hostileWorkspace(op.issuer, mode, {
    cache_host: HOST,
    cache_url: cache.url,
    timeout: `${TIMEOUT_S}s`,
  });
  workspaces.push(ws);
  await mkdir(dirname(ws.netrcPath), { recursive: true, mode: 0o700 });
  await writeFile(ws.netrcPath, KEEP, { mode: 0o600 });
  return ws;
}

/** The CLI under /usr/bin/time -v: its result and its peak RSS in KiB. */
async function measured(ws: Workspace, args: string[]): Promise<RunResult & { rssKiB: number }> {
  const r = await runCli(ws, args, {
    wrapper: ["/usr/bin/time", "-v"],
    timeoutMs: (TIMEOUT_S + 20) * 1000,
  });
  const m = /Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr);
  assert.ok(m?.[1] !== undefined, `no RSS in the output of /usr/bin/time:\n${r.stderr}`);
  // GNU time's report follows the CLI's own stderr.
  return { ...r, stderr: r.stderr.slice(0, r.stderr.indexOf("\tCommand being timed")), rssKiB: Number(m[1]) };
}

function assertBounded(r: RunResult & { rssKiB: number }, what: string, path: RegExp): void {
  assert.equal(r.signal, null, `${what}: the CLI did not end by itself within its timeout`);
  assert.equal(r.code, 1, `${what}: ${r.stderr}`);
  assert.ok(r.rssKiB < 100 * 1024, `${what}: peak RSS ${r.rssKiB} KiB`);
  const error = r.stderr.split("\n").find((l) => l.startsWith("error: "));
  assert.ok(error !== undefined, r.stderr);
  assert.match(
    error,
    new RegExp(`${HOST}:${op.port} sent more than 1 MiB in answer to [A-Z]+ ${path.source}`),
  );
  peaks.push(`${what}: ${(r.rssKiB / 1024).toFixed(1)} MiB`);
}

/** A padded JSON body: valid up to the padding, which sits inside a string. */
const bigJson = (size: number | "endless") => ({
  body: '{"access_token":"tok","token_type":"Bearer","expires_in":300,"pad":"',
  padding: { fill: "a", size },
});

describe("oversized answers from the provider", () => {
  for (const { name, size } of SIZES) {
    test(`a ${name} discovery document`, async () => {
      op.on("/.well-known/openid-configuration", () => ({
        body: JSON.stringify(op.discovery()).replace(/}$/, ',"pad":"'),
        padding: { fill: "a", size },
      }));
      try {
        const ws = await workspace("service");
        const before = await snapshot(ws.dir);
        const r = await measured(ws, ["service-account"]);
        assertBounded(
          r,
          `provider, discovery, ${name}`,
          /\/realms\/hostile\/\.well-known\/openid-configuration/,
        );
        assert.deepEqual(await snapshot(ws.dir), before, "files untouched");
      } finally {
        op.off("/.well-known/openid-configuration");
      }
    });

    test(`a ${name} token response`, async () => {
      op.on("/token", () => bigJson(size));
      const ws = await workspace("service");
      const before = await snapshot(ws.dir);
      const r = await measured(ws, ["service-account"]);
      assertBounded(r, `provider, token, ${name}`, /\/realms\/hostile\/token/);
      assert.deepEqual(await snapshot(ws.dir), before, "files untouched");
    });

    test(`a ${name} device authorization answer`, async () => {
      op.on("/device", () => ({ body: '{"device_code":"', padding: { fill: "d", size } }));
      const ws = await workspace("user");
      const before = await snapshot(ws.dir);
      const r = await measured(ws, ["login", "--device"]);
      assertBounded(r, `provider, device authorization, ${name}`, /\/realms\/hostile\/device/);
      assert.deepEqual(await snapshot(ws.dir), before, "files untouched");
    });

    test(`a ${name} answer to the logout (revocation) request`, async () => {
      op.on("/logout", () => ({ body: "<html>", padding: { fill: "x", size } }));
      const ws = await workspace("user");
      const store = new StateStore(ws.stateDir, op.issuer, "nix-cache");
      await mkdir(ws.stateDir, { recursive: true, mode: 0o700 });
      await writeState(store, { ...store.empty("user"), refresh_token: "the-refresh-token-7" });
      ws.secrets.add("the-refresh-token-7");
      const r = await measured(ws, ["logout"]);
      assert.equal(r.signal, null, "logout ended by itself");
      assert.ok(r.rssKiB < 100 * 1024, `peak RSS ${r.rssKiB} KiB`);
      assert.match(r.stderr, new RegExp(`sent more than 1 MiB in answer to POST /realms/hostile/logout`));
      peaks.push(`provider, logout, ${name}: ${(r.rssKiB / 1024).toFixed(1)} MiB`);
    });
  }

  test("a 900 KB discovery document (under the cap): only the fields the tool uses are stored", async () => {
    op.metadata.op_policy_uri = `https://example.test/${"p".repeat(900_000)}`;
    op.on("/token", () => ({
      body: { access_token: "small-token-1", token_type: "Bearer", expires_in: 300 },
    }));
    try {
      const ws = await workspace("service");
      const r = await runCli(ws, ["service-account"]);
      assert.equal(r.code, 0, r.stderr);
      const file = join(ws.stateDir, (await readdir(ws.stateDir)).find((n) => n.endsWith(".json")) as string);
      const text = await readFile(file, "utf8");
      assert.ok(text.length < 8 * 1024, `the state is ${text.length} bytes`);
      const state = JSON.parse(text) as { discovery: { metadata: Record<string, unknown> } };
      assert.equal(state.discovery.metadata.token_endpoint, `${op.issuer}/token`);
      assert.equal(state.discovery.metadata.op_policy_uri, undefined);
    } finally {
      delete op.metadata.op_policy_uri;
    }
  });
});

describe("oversized answers from the cache (doctor's probe)", () => {
  test("baseline: a small nix-cache-info (for comparison)", async () => {
    cache.size = 0;
    const ws = await workspace("service");
    const r = await measured(ws, ["doctor"]);
    assert.equal(r.signal, null);
    assert.match(r.stdout, /nix-cache-info/);
    peaks.push(`cache, doctor, small answer (baseline): ${(r.rssKiB / 1024).toFixed(1)} MiB`);
  });

  for (const { name, size } of SIZES) {
    test(`a ${name} nix-cache-info`, async () => {
      cache.size = size;
      const ws = await workspace("service");
      const before = await snapshot(ws.dir);
      const r = await measured(ws, ["doctor"]);
      assert.equal(r.signal, null, "doctor ended by itself within its timeout");
      assert.ok(r.rssKiB < 100 * 1024, `peak RSS ${r.rssKiB} KiB`);
      assert.match(
        r.stdout + r.stderr,
        new RegExp(
          `${HOST}:${new URL(cache.url).port} sent more than 1 MiB in answer to GET /nix-cache-info`,
        ),
      );
      assert.deepEqual(await snapshot(ws.dir), before, "files untouched");
      peaks.push(`cache, doctor, ${name}: ${(r.rssKiB / 1024).toFixed(1)} MiB`);
    });
  }
});

describe("a device verification URI of 100 kB", () => {
  test("one line naming the provider and the limit; nothing printed of it, no polling, files untouched", async () => {
    op.on("/device", () => ({
      body: {
        device_code: "dc",
        user_code: "ABCD-EFGH",
        verification_uri: `${op.issuer}/verify?${"v".repeat(100_000)}`,
        expires_in: 600,
      },
    }));
    const ws = await workspace("user");
    const before = await snapshot(ws.dir);
    op.requests.length = 0;
    const r = await runCli(ws, ["login", "--device"]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(
        `^error: ${HOST}:${op.port} advertises a device verification URI longer than 2048 characters; nothing was sent there$`,
        "m",
      ),
    );
    assert.ok(r.stderr.length < 2000, "the URI is not printed");
    assert.equal(op.count("/token"), 0, "no polling");
    assert.deepEqual(await snapshot(ws.dir), before);
  });
});

describe("malformed token answers", () => {
  const cases: { name: string; body: string; says: RegExp }[] = [
    {
      name: "garbage",
      body: "<html>this is not json",
      says: /a body that is not JSON \(garbage, or cut off\)/,
    },
    {
      name: "truncated JSON",
      body: '{"access_token":"abc","token_type":"Bear',
      says: /a body that is not JSON \(garbage, or cut off\)/,
    },
    {
      name: "no access token",
      body: '{"token_type":"Bearer","expires_in":300}',
      says: /no access_token in it/,
    },
    { name: "an array", body: "[1,2]", says: /JSON that is not an object/ },
  ];
  for (const c of cases) {
    test(`${c.name}: one line naming the token endpoint, files untouched`, async () => {
      op.on("/token", () => ({ body: c.body }));
      const ws = await workspace("service");
      const before = await snapshot(ws.dir);
      const r = await runCli(ws, ["service-account"]);
      assert.equal(r.code, 1, r.stderr);
      const lines = r.stderr.trim().split("\n");
      assert.equal(lines.length, 3, r.stderr);
      assert.match(lines[0] as string, new RegExp(`^error: the token endpoint ${op.issuer}/token answered`));
      assert.match(lines[0] as string, c.says);
      assert.match(lines[1] as string, /^hint: /);
      assert.equal(lines[2], "see: docs/security.md#reliability");
      assert.deepEqual(await snapshot(ws.dir), before);
    });
  }
});

describe("an answer refused after the refresh token was rotated", () => {
  test("the new refresh token is saved first: the next refresh sends it, the netrc stays as it was", async () => {
    const ws = await workspace("user");
    const store = new StateStore(ws.stateDir, op.issuer, "nix-cache");
    await mkdir(ws.stateDir, { recursive: true, mode: 0o700 });
    await writeState(store, { ...store.empty("user"), refresh_token: "the-old-refresh-token" });
    ws.secrets.add("the-old-refresh-token");
    ws.secrets.add("the-rotated-refresh-token");
    // The provider rotates the refresh token, but its ID token fails openid-client's checks.
    op.on("/token", () => ({
      body: {
        access_token: "access-from-a-refused-answer",
        token_type: "Bearer",
        expires_in: 300,
        refresh_token: "the-rotated-refresh-token",
        id_token: "not.a.valid-jwt",
      },
    }));
    const r = await runCli(ws, ["refresh"]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^error: .*; the new refresh token is saved$/m);
    assert.match(r.stderr, /^hint: .*run `nix-cache-login refresh` again \(no new sign-in is needed\)$/m);
    const state = JSON.parse(await readFile(store.file, "utf8")) as Record<string, unknown>;
    assert.equal(state.refresh_token, "the-rotated-refresh-token");
    assert.equal(state.access_token, undefined, "the refused access token is not stored");
    assert.equal(await readFile(ws.netrcPath, "utf8"), KEEP, "the netrc is as it was");
    op.requests.length = 0;
    op.on("/token", () => ({
      body: { access_token: "good-access-1", token_type: "Bearer", expires_in: 300 },
    }));
    const next = await runCli(ws, ["refresh"]);
    assert.equal(next.code, 0, next.stderr);
    const sent = op.requests.filter((q) => q.path.endsWith("/token")).map((q) => new URLSearchParams(q.body));
    assert.deepEqual(
      sent.map((b) => b.get("refresh_token")),
      ["the-rotated-refresh-token"],
    );
  });
});
