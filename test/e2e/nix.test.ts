/**
 * The point of the tool, end to end with the real clients: the built CLI writes the netrc, and
 * Debian's Nix 2.8 (nix-store -r) and curl read it to get through Apache + mod_auth_openidc, which
 * checks the realm's tokens. Missing Apache, Nix or Chromium fails these tests; it never skips them.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { StateStore } from "../../src/store/state.ts";
import { requireChromium } from "../support/chromium.ts";
import { BROWSER_COMMAND, readDriverResult } from "../support/driver.ts";
import { netrcPassword, runCli, type Workspace } from "../support/cli.ts";
import {
  HOST,
  assertNixFetches,
  assertNixRefused,
  curl,
  expireToken,
  seedUserSession,
  startBed,
  writeNetrc,
  type Bed,
} from "../support/protected-bed.ts";

// One realm, one Apache and one Nix store for the file: each test uses its own workspaces.
let bed: Bed;

before(async () => {
  bed = await startBed({ accessTokenTTL: 300 });
});

after(async () => {
  await bed?.stop();
});

async function ok(ws: Workspace, args: string[]): Promise<string> {
  const r = await runCli(ws, args);
  assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
  return r.stderr;
}

/** The subject (`sub`) of a JWT access token, as Apache logs it (OIDCOAuthRemoteUserClaim sub). */
function subjectOf(token: string): string {
  const payload = JSON.parse(Buffer.from(token.split(".")[1] ?? "", "base64url").toString()) as {
    sub: string;
  };
  return payload.sub;
}

/**
 * How many NAR fetches Apache logged for `user` since the log was `from` bytes long. Apache writes a
 * log line after it sent the response, so wait (up to 10 s) until `expected` lines are there.
 */
async function narFetchesBy(from: number, user: string, expected: number): Promise<number> {
  const escaped = user.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const re = new RegExp(`^127\\.0\\.0\\.1 ${escaped} .*"GET /nar/\\S+ HTTP/1\\.1" 200 `, "gm");
  const count = () => (bed.cache.accessLog().slice(from).match(re) ?? []).length;
  for (let i = 0; i < 200 && count() < expected; i++) await new Promise((r) => setTimeout(r, 50));
  return count();
}

async function currentToken(ws: Workspace): Promise<string> {
  const token = netrcPassword(await readFile(ws.netrcPath, "utf8"), HOST);
  assert.ok(token !== undefined, "no 127.0.0.1 entry in the netrc");
  return token;
}

describe("Nix through the protected cache with the netrc the CLI writes", () => {
  test("1. service-account: nix-store -r fetches the path; without the entry it fails", async () => {
    const ws = await bed.workspace(bed);
    await ok(ws, ["service-account"]);
    const logFrom = bed.cache.accessLog().length;
    await assertNixFetches(bed, bed.cache, ws.netrcPath, "service-account token");
    // Apache logged this fetch's NAR for the service account's subject.
    assert.equal(await narFetchesBy(logFrom, "nix-cache-server", bed.paths.length), bed.paths.length);

    // The same netrc without our entry (other entries only), and no netrc at all: Nix gets nothing.
    const withoutEntry = (await readFile(ws.netrcPath, "utf8")).replace(
      /^machine 127\.0\.0\.1\nlogin .*\npassword .*\n/m,
      "",
    );
    await writeNetrc(ws, `${withoutEntry}machine cache.example.org login x password y\n`);
    await assertNixRefused(bed, bed.cache, ws.netrcPath, "netrc without the entry");
    await assertNixRefused(bed, bed.cache, `${ws.dir}/no-such-netrc`, "no netrc");
  });

  test("2. user sign-in in a browser (login --browser-command), then Nix fetches the path", async () => {
    requireChromium();
    const ws = await bed.workspace(bed, { user: true });
    const r = await runCli(ws, ["login", "--browser-command", BROWSER_COMMAND], {
      env: { DRIVER_MODE: "login", DRIVER_RESULT: `${ws.dir}/driver.json` },
      timeoutMs: 90_000,
    });
    assert.equal((await readDriverResult(`${ws.dir}/driver.json`)).ok, true, "the browser is done");
    assert.equal(r.code, 0, r.stderr);
    const logFrom = bed.cache.accessLog().length;
    await assertNixFetches(bed, bed.cache, ws.netrcPath, "token from login");
    // Apache logged this fetch's NAR for the user who signed in (sub, not the service account).
    const sub = subjectOf(await currentToken(ws));
    assert.notEqual(sub, bed.realm.serviceClientId);
    assert.equal(await narFetchesBy(logFrom, sub, bed.paths.length), bed.paths.length);
    // And after a refresh (a new token in place of the old one) as well.
    const before = await currentToken(ws);
    await ok(ws, ["refresh"]);
    assert.notEqual(await currentToken(ws), before);
    await assertNixFetches(bed, bed.cache, ws.netrcPath, "token from refresh after login");
  });

  test("3. expired tokens: Nix and curl are refused; refresh / service-account fix it, no restart", async () => {
    const service = await bed.workspace(bed);
    const user = await bed.workspace(bed, { user: true });
    await seedUserSession(user, bed);
    await ok(service, ["service-account"]);
    await ok(user, ["refresh"]);
    await assertNixFetches(bed, bed.cache, service.netrcPath, "fresh service-account token");
    await assertNixFetches(bed, bed.cache, user.netrcPath, "fresh user token");

    // The tokens run out (signed by the realm, `exp` a minute ago): mod_auth_openidc allows no leeway.
    await expireToken(service, bed, bed.realm.serviceClientId);
    await expireToken(user, bed, bed.realm.publicClientId);
    for (const ws of [service, user]) {
      await assertNixRefused(bed, bed.cache, ws.netrcPath, "expired token");
      const c = await curl(`${bed.cache.url}/nix-cache-info`, ws.netrcPath);
      assert.equal(c.status, 401);
      assert.match(c.wwwAuthenticate, /invalid_token/);
      assert.equal((await runCli(ws, ["status", "--json"])).code, 3, "status sees the expired token");
    }

    // Same Apache, same Nix, same netrc path: only the file's contents change.
    const pid = bed.cache.pid;
    await ok(service, ["service-account"]);
    await ok(user, ["refresh"]);
    await assertNixFetches(bed, bed.cache, service.netrcPath, "service-account after expiry");
    await assertNixFetches(bed, bed.cache, user.netrcPath, "refresh after expiry");
    assert.equal(bed.cache.pid, pid);
  });

  test("4. unrelated one-line, multi-line and default entries: curl gets the right credentials for every host", async () => {
    const seen: { host: string; authorization: string | undefined }[] = [];
    const recorder = http.createServer((req, res) => {
      seen.push({
        host: (req.headers.host ?? "").replace(/:\d+$/, ""),
        authorization: req.headers.authorization,
      });
      res.end("ok\n");
    });
    await new Promise<void>((r) => recorder.listen(0, "127.0.0.1", r));
    const port = (recorder.address() as AddressInfo).port;
    try {
      const ws = await bed.workspace(bed, { user: true });
      await seedUserSession(ws, bed);
      const unrelated = {
        head: [
          "# other credentials: nix-cache-login must keep these byte for byte",
          "machine one.example login one-user password one-pass",
          "",
          "machine multi.example",
          "  login multi-user",
          "  password multi-pass",
          "",
        ].join("\n"),
        tail: "default login anonymous password anon-pass\n",
      };
      await writeNetrc(ws, unrelated.head + unrelated.tail);
      const expected: Record<string, string> = {
        "one.example": "one-user:one-pass",
        "multi.example": "multi-user:multi-pass",
        "other.example": "anonymous:anon-pass", // no entry: the `default` one
      };
      const basic = (a: string | undefined) =>
        a === undefined ? undefined : Buffer.from(a.replace(/^Basic /, ""), "base64").toString();

      for (let round = 1; round <= 3; round++) {
        await ok(ws, ["refresh"]);
        const token = await currentToken(ws);
        const netrc = await readFile(ws.netrcPath, "utf8");
        assert.equal(
          netrc,
          `${unrelated.head}machine ${HOST}\nlogin nix-cache-login\npassword ${token}\n${unrelated.tail}`,
          `round ${round}: only our entry changed, and it sits before \`default\``,
        );
        seen.length = 0;
        for (const host of Object.keys(expected)) {
          const r = await curl(`http://${host}:${port}/`, ws.netrcPath, `${host}:${port}:127.0.0.1`);
          assert.equal(r.status, 200);
        }
        // The netrc matches the host only, so 127.0.0.1 on any port gets our token.
        assert.equal((await curl(`http://${HOST}:${port}/`, ws.netrcPath)).status, 200);
        const got = Object.fromEntries(seen.map((s) => [s.host, basic(s.authorization)]));
        assert.deepEqual(got, { ...expected, [HOST]: `nix-cache-login:${token}` }, `round ${round}`);
        const state = JSON.parse(
          await readFile(
            new StateStore(ws.stateDir, bed.realm.issuer, bed.realm.publicClientId).file,
            "utf8",
          ),
        ) as { access_token: string };
        assert.equal(state.access_token, token);
        // And the real cache takes it.
        assert.equal((await curl(`${bed.cache.url}/nix-cache-info`, ws.netrcPath)).status, 200);
      }
      await assertNixFetches(bed, bed.cache, ws.netrcPath, "netrc with unrelated entries");
    } finally {
      await new Promise((r) => recorder.close(r));
    }
  });

  test("5. after logout, Nix and curl get 401", async () => {
    for (const user of [false, true]) {
      const ws = await bed.workspace(bed, { user });
      if (user) {
        await seedUserSession(ws, bed);
        await ok(ws, ["refresh"]);
      } else {
        await ok(ws, ["service-account"]);
      }
      await writeNetrc(
        ws,
        `${await readFile(ws.netrcPath, "utf8")}machine other.example login o password p\n`,
      );
      assert.equal((await curl(`${bed.cache.url}/nix-cache-info`, ws.netrcPath)).status, 200);
      await assertNixFetches(bed, bed.cache, ws.netrcPath, "before logout");

      await ok(ws, ["logout"]);
      assert.equal(await readFile(ws.netrcPath, "utf8"), "machine other.example login o password p\n");
      const c = await curl(`${bed.cache.url}/nix-cache-info`, ws.netrcPath);
      assert.equal(c.status, 401);
      assert.match(c.wwwAuthenticate, /^Bearer /);
      await assertNixRefused(
        bed,
        bed.cache,
        ws.netrcPath,
        `after logout (${user ? "user" : "service account"})`,
      );
    }
  });
});
