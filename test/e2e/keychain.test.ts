/**
 * The refresh token in the OS keychain (token_storage), against a real Secret Service: GNOME
 * Keyring on a private D-Bus session bus (test/support/keyring.ts), the built CLI, the
 * Keycloak-shaped realm and, for the sign-in, Chromium. Items are read back independently with
 * python3-secretstorage and secret-tool; writes are counted on the bus with dbus-monitor.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { access, mkdir, readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";
import { requireChromium } from "../support/chromium.ts";
import { BROWSER_COMMAND, readDriverResult, watchStderr } from "../support/driver.ts";
import {
  makeWorkspace,
  runCli,
  snapshot,
  type RunOptions,
  type RunResult,
  type Workspace,
} from "../support/cli.ts";
import { startHostileProvider } from "../support/hostile-provider.ts";
import { startKeyring, type Keyring } from "../support/keyring.ts";
import { startRealm, type Realm } from "../support/realm.ts";
import { realmUserWorkspace, seedSession } from "../support/realm-workspaces.ts";
import { StateStore } from "../../src/store/state.ts";
import { writeState } from "../../src/store/write.ts";

const execFileP = promisify(execFile);
const HOST = "cache.example.test";

let realm: Realm;
const cleanups: (() => Promise<void>)[] = [];

before(async () => {
  realm = await startRealm({ tls: false });
});
after(async () => {
  for (const c of cleanups.reverse()) await c();
  await realm.stop();
});

interface Bed {
  ws: Workspace;
  keyring: Keyring;
  run(args: string[], env?: Record<string, string | undefined>, opts?: RunOptions): Promise<RunResult>;
  state(): Promise<Record<string, unknown>>;
  /** Our items (Chromium keeps its own "Chromium Safe Storage" item in the same keyring). */
  items(): Promise<{ label: string; attributes: Record<string, string>; secret: string }[]>;
  label: string;
}

/** A workspace whose HOME holds a running, unlocked keyring; the CLI sees its session bus. */
async function bed(extra: Record<string, unknown> = {}, o: { display?: boolean } = {}): Promise<Bed> {
  const ws = await realmUserWorkspace(realm, HOST, extra);
  const keyring = await startKeyring(ws.home, o);
  cleanups.push(async () => {
    await keyring.stop();
    await ws.cleanup();
  });
  const busEnv = {
    DBUS_SESSION_BUS_ADDRESS: keyring.env.DBUS_SESSION_BUS_ADDRESS,
    XDG_DATA_HOME: keyring.env.XDG_DATA_HOME,
    XDG_RUNTIME_DIR: keyring.env.XDG_RUNTIME_DIR,
  };
  return {
    ws,
    keyring,
    label: `nix-cache-login: ${realm.issuer} (${realm.publicClientId})`,
    items: async () => (await keyring.items()).filter((i) => i.attributes.service === "nix-cache-login"),
    run: (args, env = {}, opts = {}) => runCli(ws, args, { ...opts, env: { ...busEnv, ...env } }),
    async state() {
      const files = (await readdir(ws.stateDir)).filter((f) => f.endsWith(".json"));
      assert.equal(files.length, 1, `one state file in ${ws.stateDir}: ${files.join(", ")}`);
      return JSON.parse(await readFile(join(ws.stateDir, files[0] as string), "utf8")) as Record<
        string,
        unknown
      >;
    },
  };
}

/** Every file under `dir` (HOME and every XDG_* directory of the workspace live there). */
async function allFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out.push(join(e.parentPath, e.name));
  }
  return out;
}

/**
 * Keeps every process's argv and environment seen while `during` runs, and checks them afterwards
 * against `secrets()`: a token written to the keychain during a run is known only once it is read
 * back, after that run.
 */
async function sampleProcesses(
  secrets: () => string[],
  during: () => Promise<void>,
): Promise<{ samples: number; leaks: string[] }> {
  let done = false;
  let samples = 0;
  const seen = new Map<string, string>();
  const sampler = (async () => {
    while (!done) {
      for (const pid of await readdir("/proc").catch(() => [] as string[])) {
        if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
        for (const what of ["cmdline", "environ"]) {
          const text = await readFile(`/proc/${pid}/${what}`, "latin1").catch(() => "");
          if (text !== "" && !seen.has(text)) seen.set(text, `/proc/${pid}/${what}`);
        }
      }
      samples++;
    }
  })();
  try {
    await during();
  } finally {
    done = true;
    await sampler;
  }
  const leaks = [...seen]
    .filter(([text]) => secrets().some((s) => text.includes(s)))
    .map(([, where]) => where);
  return { samples, leaks };
}

/**
 * A session whose refresh token went into the keychain, then the keyring locked: `refresh` must
 * fail with exit 1, send no grant and leave every file as it was. Returns that run for its message.
 */
async function refreshLocked(b: Bed): Promise<RunResult> {
  await seedSession(b.ws, realm);
  assert.equal((await b.run(["refresh"])).code, 0);
  await b.keyring.lock();
  const files = await snapshot(b.ws.dir);
  realm.clearRequests();
  const r = await b.run(["refresh"]);
  assert.equal(r.code, 1, r.stderr);
  assert.equal(realm.countRequests("/token"), 0, "no grant was sent");
  assert.deepEqual(await snapshot(b.ws.dir), files, "the netrc and the state are as they were");
  return r;
}

/** Approves the device code the CLI shows, once `before` (if any) has run. */
function approving(before?: () => Promise<void>): RunOptions {
  return {
    onSpawn: (child) =>
      watchStderr(child, /and check that it shows the code (\S+)\n/, (m) => {
        void (async () => {
          await before?.();
          await realm.approveDevice(m[1] as string);
        })();
      }),
  };
}

describe("token_storage: the refresh token in a real Secret Service (GNOME Keyring)", () => {
  test("a browser sign-in keeps the refresh token in one keychain item, replaced in place, written only when it changed, removed by logout", async (t) => {
    requireChromium();
    const b = await bed();
    const seen = new Set<string>();
    const secretsSeen = () => [...seen, ...b.ws.secrets].filter((s) => s.length >= 16);

    const resultFile = join(b.ws.dir, "driver.json");
    const signIn = await b.run(["login", "--browser-command", BROWSER_COMMAND], {
      DRIVER_MODE: "login",
      DRIVER_RESULT: resultFile,
    });
    await readDriverResult(resultFile);
    assert.equal(signIn.code, 0, signIn.stderr);
    assert.match(signIn.stderr, /The refresh token is kept in the Secret Service \(token_storage = auto\)\./);

    let items = await b.items();
    assert.equal(
      items.length,
      1,
      `one item after the sign-in: ${JSON.stringify(items.map((i) => [i.label, i.attributes]))}`,
    );
    const first = items[0]!;
    assert.equal(first.label, b.label);
    // libsecret may add its own xdg:schema attribute (it did on some runs and not on others).
    const { "xdg:schema": _schema, ...attributes } = first.attributes;
    assert.deepEqual(attributes, {
      service: "nix-cache-login",
      issuer: realm.issuer,
      client_id: realm.publicClientId,
    });
    seen.add(first.secret);
    b.ws.secrets.add(first.secret);
    const state = await b.state();
    assert.equal(state.refresh_token, undefined, "the state file holds no refresh token");
    assert.equal(state.refresh_token_in, "keychain");

    const status = await b.run(["status", "--json"]);
    assert.equal(status.code, 0, status.stderr);
    const json = JSON.parse(status.stdout) as { refresh_token: { stored_in: string; valid: boolean } };
    assert.equal(json.refresh_token.stored_in, "keychain");
    assert.equal(json.refresh_token.valid, true);
    assert.match((await b.run(["status"])).stdout, /refresh token: +valid, .*, in the Secret Service$/m);

    // Ten renewals: the realm rotates the refresh token each time; the one item follows it.
    const writes = await b.keyring.countWrites();
    const sampled = await sampleProcesses(secretsSeen, async () => {
      for (let i = 0; i < 10; i++) {
        const r = await b.run(["refresh"]);
        assert.equal(r.code, 0, r.stderr);
        items = await b.items();
        assert.equal(items.length, 1, `one item after refresh ${i + 1}`);
        assert.ok(!seen.has(items[0]!.secret), "the item holds the rotated token");
        seen.add(items[0]!.secret);
        b.ws.secrets.add(items[0]!.secret);
      }
    });
    assert.equal(writes.count(), 10, "one write per rotated token");
    assert.deepEqual(sampled.leaks, [], "no refresh token on any argv or in any environment");
    assert.ok(sampled.samples > 0);
    const lookup = await execFileP(
      "secret-tool",
      ["lookup", "service", "nix-cache-login", "issuer", realm.issuer, "client_id", realm.publicClientId],
      { env: b.keyring.env },
    );
    assert.equal(lookup.stdout, items[0]!.secret, "secret-tool reads back the current token");

    // A timer's fresh runs read nothing from the keychain and write nothing to it.
    const before100 = writes.count();
    for (let i = 0; i < 100; i++) {
      const r = await b.run(["refresh", "--min-valid", "1m", "--quiet"]);
      assert.equal(r.code, 0, r.stderr);
    }
    assert.equal(writes.count() - before100, 0, "no write in 100 fresh refresh --min-valid runs");
    await writes.stop();

    // No refresh token in any file of HOME or XDG_* (the keyring's own file is encrypted).
    const files = await allFiles(b.ws.dir);
    assert.ok(files.length > 3);
    t.diagnostic(
      `10 renewals: ${writes.count()} item writes, ${items.length} item; 100 fresh runs: ${writes.count() - before100} writes; ` +
        `${files.length} files scanned; ${sampled.samples} scans of every /proc/PID/{cmdline,environ}`,
    );
    for (const f of files) {
      const bytes = await readFile(f, "latin1");
      for (const s of seen) assert.ok(!bytes.includes(s), `${f} holds a refresh token`);
    }

    const out = await b.run(["logout"]);
    assert.equal(out.code, 0, out.stderr);
    assert.deepEqual(await b.items(), [], "logout removed the item");
  });

  test("migration: file -> keychain under auto, keychain -> file under file, and back; no copy left behind", async () => {
    const b = await bed();
    const rt0 = await seedSession(b.ws, realm);
    assert.equal((await b.state()).refresh_token, rt0);

    const toKeychain = await b.run(["refresh"]);
    assert.equal(toKeychain.code, 0, toKeychain.stderr);
    let items = await b.items();
    assert.equal(items.length, 1);
    let state = await b.state();
    assert.equal(state.refresh_token, undefined);
    assert.equal(state.refresh_token_in, "keychain");

    await b.ws.writeConfig({
      issuer: realm.issuer,
      client_id: realm.publicClientId,
      cache_host: HOST,
      token_storage: "file",
    });
    const toFile = await b.run(["refresh"]);
    assert.equal(toFile.code, 0, toFile.stderr);
    state = await b.state();
    assert.equal(typeof state.refresh_token, "string");
    assert.equal(state.refresh_token_in, undefined);
    assert.deepEqual(await b.items(), [], "no copy left in the keychain");
    const status = await b.run(["status", "--json"]);
    assert.equal(
      (JSON.parse(status.stdout) as { refresh_token: { stored_in: string } }).refresh_token.stored_in,
      "file",
    );

    await b.ws.writeConfig({ issuer: realm.issuer, client_id: realm.publicClientId, cache_host: HOST });
    const back = await b.run(["refresh", "--min-valid", "1m"]);
    assert.equal(back.code, 0, back.stderr);
    // Fresh: nothing written, so the token stays where it is until the next renewal.
    assert.deepEqual(await b.items(), []);
    const renewed = await b.run(["refresh"]);
    assert.equal(renewed.code, 0, renewed.stderr);
    items = await b.items();
    assert.equal(items.length, 1);
    state = await b.state();
    assert.equal(state.refresh_token, undefined, "moved out of the file again");
  });

  test("a locked keyring: refresh exits 1 at once with the hint to unlock, no grant is sent, every file as it was", async () => {
    const b = await bed();
    const r = await refreshLocked(b);
    assert.match(r.stderr, /^error: could not read the refresh token: the Secret Service is locked$/m);
    assert.match(r.stderr, /^hint: unlock the keyring .*token_storage = "file"/m);
    const doctor = await b.run(["doctor", "--json"]);
    const check = (
      JSON.parse(doctor.stdout) as { checks: { id: string; status: string; summary: string }[] }
    ).checks.find((c) => c.id === "keychain");
    assert.equal(check?.status, "problem");
    assert.match(check?.summary ?? "", /locked/);
  });

  test("an unlock prompt that waits for someone: refresh gives up after the bounded wait, exit 1, no grant, every file as it was", async () => {
    // A real prompt: gcr-prompter opens its window on an X server (Xvfb) and waits for a password.
    const r = await refreshLocked(await bed({}, { display: true }));
    assert.match(
      r.stderr,
      /^error: could not read the refresh token: the Secret Service did not answer within 5 s \(locked, waiting for an unlock prompt\?\)$/m,
    );
    assert.match(r.stderr, /^hint: unlock the keyring/m);
  });

  test("no session bus: auto keeps the token in the state file and says why; keychain is an error before any grant", async () => {
    const b = await bed();
    const noBus = { DBUS_SESSION_BUS_ADDRESS: undefined, XDG_RUNTIME_DIR: undefined };
    await seedSession(b.ws, realm);
    const auto = await b.run(["refresh"], noBus);
    assert.equal(auto.code, 0, auto.stderr);
    assert.match(
      auto.stderr,
      /The refresh token is kept in the state file: no D-Bus session bus \(DBUS_SESSION_BUS_ADDRESS is not set\) \(token_storage = auto\)\./,
    );
    const again = await b.run(["refresh"], noBus);
    assert.equal(again.code, 0, again.stderr);
    assert.doesNotMatch(again.stderr, /kept in the state file/, "said once, not at every renewal");
    assert.match(
      (await b.run(["status"], noBus)).stdout,
      /in the state file: no D-Bus session bus \(DBUS_SESSION_BUS_ADDRESS is not set\)\n/,
    );
    assert.deepEqual(await b.items(), []);

    await b.ws.writeConfig({
      issuer: realm.issuer,
      client_id: realm.publicClientId,
      cache_host: HOST,
      token_storage: "keychain",
    });
    realm.clearRequests();
    const strict = await b.run(["refresh"], noBus);
    assert.equal(strict.code, 1, strict.stderr);
    assert.match(strict.stderr, /token_storage = "keychain" in .*, but no D-Bus session bus/);
    assert.equal(realm.countRequests("/token"), 0);
    const signIn = await b.run(["login", "--no-browser"], noBus);
    assert.equal(signIn.code, 1, signIn.stderr);
    assert.match(signIn.stderr, /token_storage = "keychain" in .*, but no D-Bus session bus/);
    assert.doesNotMatch(
      signIn.stderr,
      /^\s*http:\/\/127\.0\.0\.1:\d+\/\s*$/m,
      "fails before any sign-in URL is shown",
    );
  });

  test("a refresh token longer than secret-tool keeps whole (8192 bytes) stays in the state file, even under keychain; the next renewal sends all of it", async () => {
    // secret-tool 0.20.5 keeps the first 8192 bytes of a longer secret and exits 0.
    const op = await startHostileProvider();
    const big = (n: number) => `${n}-`.padEnd(9000, "R");
    let n = 0;
    op.on("/token", () => ({
      body: {
        access_token: `hostile-access-${++n}`,
        token_type: "Bearer",
        expires_in: 300,
        refresh_token: big(n),
      },
    }));
    const ws = await makeWorkspace();
    const keyring = await startKeyring(ws.home);
    cleanups.push(async () => {
      await keyring.stop();
      await ws.cleanup();
      await op.stop();
    });
    await ws.writeConfig({
      issuer: op.issuer,
      client_id: "nix-cache",
      cache_host: HOST,
      token_storage: "keychain",
    });
    const store = new StateStore(ws.stateDir, op.issuer, "nix-cache");
    await mkdir(ws.stateDir, { recursive: true, mode: 0o700 });
    await writeState(store, { ...store.empty("user"), refresh_token: "initial-refresh-token" });
    const env = {
      DBUS_SESSION_BUS_ADDRESS: keyring.env.DBUS_SESSION_BUS_ADDRESS,
      XDG_DATA_HOME: keyring.env.XDG_DATA_HOME,
      XDG_RUNTIME_DIR: keyring.env.XDG_RUNTIME_DIR,
    };
    const runs: RunResult[] = [];
    for (let i = 1; i <= 2; i++) {
      const r = await runCli(ws, ["refresh"], { env });
      assert.equal(r.code, 0, r.stderr);
      runs.push(r);
    }
    const sent = op.requests
      .filter((q) => q.path.endsWith("/token"))
      .map((q) => new URLSearchParams(q.body).get("refresh_token")?.length);
    assert.deepEqual(sent, ["initial-refresh-token".length, 9000], "the second renewal sends all 9000 bytes");
    assert.equal(store.read()?.refresh_token, big(2), "the whole rotated token is kept");
    for (const r of runs) {
      assert.match(
        r.stderr,
        /^warning: could not save the refresh token in the keychain \(the refresh token is longer than the 8192 bytes secret-tool can store\); kept it in the state file this time$/m,
      );
      assert.doesNotMatch(r.stderr, /kept in the Secret Service/);
    }
    const state = store.read();
    assert.equal(state?.refresh_token_in, undefined);
    assert.match(state?.refresh_token_file_reason ?? "", /longer than the 8192 bytes secret-tool can store/);
    const items = (await keyring.items()).filter((i) => i.attributes.service === "nix-cache-login");
    assert.deepEqual(items, [], "no truncated copy in the keychain");
    const status = await runCli(ws, ["status"], { env });
    assert.match(
      status.stdout,
      /in the state file: the refresh token is longer than the 8192 bytes secret-tool can store\n/,
    );
  });

  test("login under keychain with a locked keyring: exit 1 before any device code or sign-in URL, nothing written", async () => {
    const b = await bed({ token_storage: "keychain" });
    await b.keyring.lock();
    realm.clearRequests();
    // Were the sign-in to go on, approving its code makes that run end at once (and show it).
    const device = await b.run(["login", "--device", "--timeout", "30s"], {}, approving());
    assert.equal(device.code, 1, device.stderr);
    assert.match(
      device.stderr,
      /^error: the keychain cannot take the refresh token of a new sign-in: the Secret Service is locked$/m,
    );
    assert.match(device.stderr, /^hint: unlock the keyring .*token_storage = "file"/m);
    assert.doesNotMatch(device.stderr, /check that it shows the code/, "no device code was shown");
    assert.equal(realm.countRequests("/auth/device"), 0, "no device authorization request");
    assert.equal(realm.countRequests("/token"), 0, "no grant");
    const browser = await b.run(["login", "--no-browser", "--timeout", "30s"]);
    assert.equal(browser.code, 1, browser.stderr);
    assert.doesNotMatch(browser.stderr, /^\s*http:\/\/127\.0\.0\.1:\d+\/\s*$/m, "no sign-in URL was shown");
    assert.equal(realm.countRequests("/token"), 0, "no grant");
    assert.deepEqual(await readdir(b.ws.stateDir).catch(() => []), [], "no token state");
    await assert.rejects(access(b.ws.netrcPath), "no netrc");
  });

  test("login under keychain, the keyring locked after the check: exit 1, no refresh token in any file, the issued token revoked", async () => {
    const b = await bed({ token_storage: "keychain" });
    realm.clearRequests();
    // Locked while the device code waits for approval: the check passed, the write after the grant fails.
    const r = await b.run(
      ["login", "--device", "--timeout", "30s"],
      {},
      approving(() => b.keyring.lock()),
    );
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      /^error: could not save the refresh token of the new sign-in: the Secret Service is locked$/m,
    );
    assert.match(r.stderr, /^Revoked the refresh token just issued: nothing of this sign-in was saved\.$/m);
    assert.doesNotMatch(r.stderr, /kept it in the state file/);
    // Polls before the approval count too (authorization_pending).
    assert.ok(realm.countRequests("/token") >= 1, "the device grant was sent");
    assert.equal(realm.countRequests("/revoke"), 1, "its refresh token was revoked");
    for (const f of await readdir(b.ws.stateDir).catch(() => [] as string[])) {
      const text = await readFile(join(b.ws.stateDir, f), "utf8");
      assert.doesNotMatch(text, /refresh_token"/, `${f} holds no refresh token`);
    }
    await assert.rejects(access(b.ws.netrcPath), "no netrc written");
  });

  test("login under auto with a locked keyring: the sign-in goes on and keeps the token in the state file, saying why", async () => {
    // auto uses the keychain when one answers and the state file otherwise (docs/security.md).
    const b = await bed();
    await b.keyring.lock();
    const r = await b.run(["login", "--device", "--timeout", "30s"], {}, approving());
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stderr,
      /The refresh token is kept in the state file: the Secret Service is locked \(token_storage = auto\)\./,
    );
    const state = await b.state();
    assert.equal(typeof state.refresh_token, "string");
    assert.equal(state.refresh_token_file_reason, "the Secret Service is locked");
  });

  test("login waits for the person at the screen to unlock the keyring (longer than a timer waits), then goes on", async () => {
    // A real prompt: gcr-prompter opens its window on an X server (Xvfb); the password is typed
    // into it 6 s after the window opened, more than the 5 s a timer's run waits: a person may
    // take that long.
    const b = await bed({ token_storage: "keychain" }, { display: true });
    await b.keyring.lock();
    const r = await b.run(
      ["login", "--device", "--timeout", "60s"],
      {},
      {
        onSpawn: (child) => {
          void b.keyring.answerUnlockPrompt(6_000);
          approving().onSpawn?.(child);
        },
      },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^Waiting for the Secret Service \(unlock the keyring if it asks\) \.\.\.$/m);
    assert.match(r.stderr, /The refresh token is kept in the Secret Service \(token_storage = keychain\)\./);
    const items = await b.items();
    assert.equal(items.length, 1, "the sign-in's refresh token is in the keychain");
    assert.equal((await b.state()).refresh_token, undefined, "and not in the state file");
  });

  test("a timer's refresh with a locked keyring whose unlock prompt waits for someone: exit 1 after the 5 s bound, nothing sent or written", async () => {
    const b = await bed({ token_storage: "keychain" }, { display: true });
    const r = await refreshLocked(b);
    assert.match(
      r.stderr,
      /^error: could not read the refresh token: the Secret Service did not answer within 5 s \(locked, waiting for an unlock prompt\?\)$/m,
    );
  });
});
