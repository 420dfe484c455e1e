/**
 * Several cache hosts on one sign-in (`cache_host` as a list), end to end: the built CLI writes one
 * entry per host, and curl and Debian's Nix get through Apache + mod_auth_openidc under both names.
 * Apache listens on 127.0.0.1 only; `localhost` (127.0.0.1 in /etc/hosts) is the second name: curl
 * matches netrc entries by the URL's host name, so `localhost` and `127.0.0.1` need their own entries.
 */
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { findEntry, parseNetrc, removeEntries } from "../../src/netrc/netrc.ts";
import { StateStore } from "../../src/store/state.ts";
import { writeState } from "../../src/store/write.ts";
import { runCli, type Workspace } from "../support/cli.ts";
import { assertNixFetches, curl, startBed, writeNetrc, type Bed } from "../support/protected-bed.ts";

const HOSTS = ["127.0.0.1", "localhost"] as const;

/** Unrelated entries before, between and after ours (and a `default` that must stay last). */
const AROUND = [
  "# my other credentials",
  "machine github.com login octocat password gh-secret-1",
  "machine 127.0.0.1 login nix-cache-login password stale-1",
  "machine example.org",
  "  login someone",
  "  password p2",
  "",
  "machine localhost login nix-cache-login password stale-2",
  "machine other.example.org login x password y",
  "default login anonymous password guest",
  "",
].join("\n");

/** The netrc with our entries taken out: what must stay byte for byte. */
function unrelated(text: string): string {
  return HOSTS.reduce((t, h) => removeEntries(t, h), text);
}

function passwords(text: string): (string | undefined)[] {
  const netrc = parseNetrc(text);
  return HOSTS.map((h) => {
    const e = findEntry(netrc, h);
    assert.equal(e?.kind, "machine", `the ${h} entry comes before \`default\``);
    assert.equal(netrc.entries.filter((x) => x.machine === h).length, 1, `one ${h} entry`);
    return e?.password;
  });
}

function localhostUrl(url: string): string {
  return url.replace("://127.0.0.1:", "://localhost:");
}

let bed: Bed;

before(async () => {
  // One-hour tokens, as the shared-token test below needs (the others do not mind).
  bed = await startBed({ accessTokenTTL: 3600 });
});

after(async () => {
  await bed?.stop();
});

async function twoHostWorkspace(user = false): Promise<Workspace> {
  return bed.workspace(bed, {
    user,
    extra: { cache_host: [...HOSTS], cache_url: [bed.cache.url, localhostUrl(bed.cache.url)] },
  });
}

describe("cache_host as a list", () => {
  test("one grant writes both entries; curl and Nix get in under both names; status, doctor and logout cover each host", async () => {
    const ws = await twoHostWorkspace();
    await writeNetrc(ws, AROUND);
    bed.realm.clearRequests();
    const r = await runCli(ws, ["service-account"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(bed.realm.countRequests("/token"), 1, "one grant for both hosts");
    const text = await readFile(ws.netrcPath, "latin1");
    const [a, b] = passwords(text);
    assert.ok(a !== undefined && a.startsWith("ey"), "a JWT for 127.0.0.1");
    assert.equal(b, a, "the same token for localhost");
    ws.secrets.add(a);
    assert.equal(unrelated(text), unrelated(AROUND), "unrelated entries are kept byte for byte");

    for (const url of [bed.cache.url, localhostUrl(bed.cache.url)]) {
      assert.equal((await curl(`${url}/nix-cache-info`, ws.netrcPath)).status, 200, url);
    }
    await assertNixFetches(
      bed,
      { ...bed.cache, url: localhostUrl(bed.cache.url) },
      ws.netrcPath,
      "via localhost",
    );
    await assertNixFetches(bed, bed.cache, ws.netrcPath, "via 127.0.0.1");

    const status = await runCli(ws, ["status", "--json"]);
    assert.equal(status.code, 0, status.stderr);
    const json = JSON.parse(status.stdout) as Record<string, unknown>;
    assert.deepEqual(json.cache_hosts, [...HOSTS]);
    assert.deepEqual(json.netrc_entries, { "127.0.0.1": true, localhost: true });
    assert.equal(json.netrc_entry, true);

    const doctor = await runCli(ws, ["doctor", "--json"]);
    const checks = (
      JSON.parse(doctor.stdout) as { checks: { id: string; status: string; summary: string }[] }
    ).checks;
    for (const h of HOSTS) {
      for (const id of ["netrc_entry", "netrc_token", "cache"]) {
        const c = checks.find((x) => x.id === `${id}:${h}`);
        assert.equal(c?.status, "ok", `${id}:${h}: ${c?.summary}`);
      }
    }

    // One host's entry lost (by hand): status says which, and --min-valid puts the token back
    // without a grant.
    await writeNetrc(ws, removeEntries(await readFile(ws.netrcPath, "latin1"), "localhost"));
    const partial = await runCli(ws, ["status", "--json"]);
    assert.equal(partial.code, 3);
    assert.deepEqual((JSON.parse(partial.stdout) as Record<string, unknown>).netrc_entries, {
      "127.0.0.1": true,
      localhost: false,
    });
    const text2 = await runCli(ws, ["status"]);
    assert.match(text2.stdout, /the 127\.0\.0\.1 entry holds the current token; no entry for localhost/);
    bed.realm.clearRequests();
    const back = await runCli(ws, ["service-account", "--min-valid", "1m"]);
    assert.equal(back.code, 0, back.stderr);
    assert.equal(bed.realm.countRequests("/token"), 0, "no grant: the stored token is still valid");
    assert.deepEqual(passwords(await readFile(ws.netrcPath, "latin1")), [a, a]);

    const logout = await runCli(ws, ["logout"]);
    assert.equal(logout.code, 0, logout.stderr);
    assert.match(logout.stderr, /removed the 127\.0\.0\.1 and localhost entries/);
    const left = await readFile(ws.netrcPath, "latin1");
    assert.equal(left, unrelated(AROUND), "logout removes both entries and nothing else");
    for (const url of [bed.cache.url, localhostUrl(bed.cache.url)]) {
      assert.equal((await curl(`${url}/nix-cache-info`, ws.netrcPath)).status, 401, url);
    }
  });

  test("10 parallel refreshes with two hosts: one refresh at the provider, one entry per host, neighbours intact", async () => {
    const ws = await twoHostWorkspace(true);
    const tokens = await bed.realm.signIn();
    ws.secrets.add(tokens.refresh_token as string);
    ws.secrets.add(tokens.access_token as string);
    const store = new StateStore(ws.stateDir, bed.realm.issuer, bed.realm.publicClientId);
    await writeState(store, { ...store.empty("user"), refresh_token: tokens.refresh_token as string });
    await writeNetrc(ws, AROUND);
    bed.realm.clearRequests();
    const results = await Promise.all(Array.from({ length: 10 }, () => runCli(ws, ["refresh"])));
    for (const r of results) assert.equal(r.code, 0, r.stderr);
    assert.equal(bed.realm.countRequests("/token"), 1, "the provider saw exactly one refresh");
    const text = await readFile(ws.netrcPath, "latin1");
    const [a, b] = passwords(text);
    assert.equal(b, a);
    assert.equal(unrelated(text), unrelated(AROUND));
    for (const url of [bed.cache.url, localhostUrl(bed.cache.url)]) {
      assert.equal((await curl(`${url}/nix-cache-info`, ws.netrcPath)).status, 200, url);
    }
    const status = await runCli(ws, ["status"]);
    assert.equal(status.code, 0, "the session survived (no refresh token was used twice)");
  });
});

describe("two configurations with the same issuer and client_id share one token", () => {
  test("10 alternating `service-account --min-valid 10m` runs make one grant; the other config's status stays 0", async () => {
    const ws = await bed.workspace(bed);
    const secretFile = join(ws.dir, "client-secret");
    await writeFile(secretFile, `${bed.realm.serviceClientSecret}\n`, { mode: 0o600 });
    ws.secrets.add(bed.realm.serviceClientSecret);
    // Two caches, two files, one state (same issuer + client_id, same XDG_STATE_HOME).
    const configs = await Promise.all(
      HOSTS.map(async (host, i) => {
        const path = join(ws.dir, `config-${i}.toml`);
        await writeFile(
          path,
          [
            `issuer = ${JSON.stringify(bed.realm.issuer)}`,
            `client_id = ${JSON.stringify(bed.realm.serviceClientId)}`,
            `cache_host = ${JSON.stringify(host)}`,
            `netrc_path = ${JSON.stringify(join(ws.dir, `netrc-${i}`))}`,
            `client_secret_file = ${JSON.stringify(secretFile)}`,
            "",
          ].join("\n"),
        );
        return path;
      }),
    );
    bed.realm.clearRequests();
    for (let i = 0; i < 10; i++) {
      const mine = configs[i % 2] as string;
      const other = configs[(i + 1) % 2] as string;
      const r = await runCli(ws, ["--config", mine, "service-account", "--min-valid", "10m"]);
      assert.equal(r.code, 0, `run ${i}: ${r.stderr}`);
      const own = await runCli(ws, ["--config", mine, "status"]);
      assert.equal(own.code, 0, `run ${i}: status of the config that ran: ${own.stderr}`);
      // Before the other configuration ever ran, its netrc has no entry yet.
      const st = await runCli(ws, ["--config", other, "status"]);
      assert.equal(
        st.code,
        i === 0 ? 3 : 0,
        `run ${i}: status of the other config: ${st.stdout}${st.stderr}`,
      );
    }
    assert.equal(bed.realm.countRequests("/token"), 1, "one grant for 10 runs");
    const tokens = [0, 1].map(async (i) => {
      const text = await readFile(join(ws.dir, `netrc-${i}`), "latin1");
      return findEntry(parseNetrc(text), HOSTS[i] as string)?.password;
    });
    const [t0, t1] = await Promise.all(tokens);
    assert.ok(t0 !== undefined);
    assert.equal(t1, t0);
  });
});

describe("init with several cache hosts", () => {
  test("--cache-host a,b writes a list that status reports host by host", async () => {
    const ws = await bed.workspace(bed);
    const r = await runCli(ws, [
      "--config",
      join(ws.dir, "init.toml"),
      "init",
      "--issuer",
      bed.realm.issuer,
      "--client-id",
      bed.realm.publicClientId,
      "--cache-host",
      HOSTS.join(","),
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      await readFile(join(ws.dir, "init.toml"), "utf8"),
      /^cache_host = \["127\.0\.0\.1", "localhost"\]$/m,
    );
    const status = await runCli(ws, ["--config", join(ws.dir, "init.toml"), "status", "--json"]);
    assert.deepEqual((JSON.parse(status.stdout) as Record<string, unknown>).cache_hosts, [...HOSTS]);
  });
});
