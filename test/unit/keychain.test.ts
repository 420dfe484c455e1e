/**
 * The keychain tools' exact invocations. The Secret Service runs for real in
 * test/e2e/keychain.test.ts; macOS cannot run here, so its `security` calls (argv and stdin) and
 * the meaning of its exit statuses are checked against a recording stand-in for the process.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  itemLabel,
  keychainUnavailable,
  macosKeychain,
  macosStoreCommand,
  secretService,
  type RunTool,
  type ToolResult,
} from "../../src/os/keychain.ts";

const ITEM = { issuer: "https://sso.example.org/realms/nix", clientId: "nix-cache" };
const TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJ0eXAiOiJSZWZyZXNoIn0.c2lnbmF0dXJl";

interface Call {
  file: string;
  args: readonly string[];
  stdin: string;
}

function recorder(answers: Partial<ToolResult>[]): { run: RunTool; calls: Call[] } {
  const calls: Call[] = [];
  const run: RunTool = (file, args, stdin) => {
    calls.push({ file, args, stdin });
    const a = answers.shift() ?? {};
    return Promise.resolve({ code: 0, stdout: "", stderr: "", timedOut: false, missing: false, ...a });
  };
  return { run, calls };
}

describe("macOS: /usr/bin/security", () => {
  test("write: `security -i` with the command on stdin, the token hex-encoded; nothing secret on the argv", async () => {
    const { run, calls } = recorder([{}]);
    await macosKeychain({}, run).write(ITEM, TOKEN);
    assert.equal(calls.length, 1);
    const call = calls[0]!;
    assert.equal(call.file, "/usr/bin/security");
    assert.deepEqual(call.args, ["-i"]);
    assert.equal(
      call.stdin,
      `add-generic-password -U -s nix-cache-login -a nix-cache@https%3A%2F%2Fsso.example.org%2Frealms%2Fnix -l "nix-cache-login: https://sso.example.org/realms/nix (nix-cache)" -X ${Buffer.from(TOKEN).toString("hex")}\n`,
    );
    assert.ok(!call.stdin.includes(TOKEN), "the token itself is never in the command text");
    for (const a of call.args) assert.ok(!a.includes(TOKEN));
  });

  test("write: stderr that quotes the command never carries the hex-encoded token into the error", async () => {
    const hex = Buffer.from(TOKEN).toString("hex");
    const { run } = recorder([{ stderr: `security: add-generic-password ... -X ${hex}: failed\n` }]);
    const e = await macosKeychain({}, run)
      .write(ITEM, TOKEN)
      .then(
        () => assert.fail("no error"),
        (err: unknown) => err as Error & { detail?: string },
      );
    assert.ok(!`${e.message}${e.detail ?? ""}`.includes(hex), e.message);
    assert.match(e.message, /\[the token\]/);
  });

  test("write: a failure that `security -i` reports only on stderr is a failure", async () => {
    const { run } = recorder([
      {
        stderr: "security: SecKeychainItemCreateFromContent (<default>): User interaction is not allowed.\n",
      },
    ]);
    await assert.rejects(macosKeychain({}, run).write(ITEM, TOKEN), { failure: "locked" });
  });

  test("read: find-generic-password -w, the token on stdout; 44 is no item; 36 and 51 a locked keychain", async () => {
    const found = recorder([{ stdout: `${TOKEN}\n` }]);
    assert.equal(await macosKeychain({}, found.run).read(ITEM), TOKEN);
    assert.deepEqual(found.calls[0]?.args, [
      "find-generic-password",
      "-s",
      "nix-cache-login",
      "-a",
      "nix-cache@https%3A%2F%2Fsso.example.org%2Frealms%2Fnix",
      "-w",
    ]);
    assert.equal(found.calls[0]?.stdin, "");
    assert.equal(await macosKeychain({}, recorder([{ code: 44 }]).run).read(ITEM), undefined);
    for (const code of [36, 51]) {
      await assert.rejects(macosKeychain({}, recorder([{ code }]).run).read(ITEM), { failure: "locked" });
    }
    await assert.rejects(macosKeychain({}, recorder([{ timedOut: true, code: null }]).run).read(ITEM), {
      failure: "timeout",
    });
  });

  test("remove: delete-generic-password; 44 means there was none", async () => {
    const r = recorder([{}, { code: 44 }]);
    const kc = macosKeychain({}, r.run);
    assert.equal(await kc.remove(ITEM), true);
    assert.equal(await kc.remove(ITEM), false);
    assert.deepEqual(r.calls[0]?.args, [
      "delete-generic-password",
      "-s",
      "nix-cache-login",
      "-a",
      "nix-cache@https%3A%2F%2Fsso.example.org%2Frealms%2Fnix",
    ]);
  });

  test("the label carries no character that would end the quoted word of `security -i`", () => {
    const label = itemLabel({ issuer: 'https://x.example/"a\\b', clientId: "c\n\u001b[31m" });
    assert.doesNotMatch(label, /["\\\n]/);
    assert.ok(!label.includes("\u001b"));
    assert.match(
      macosStoreCommand({ issuer: "https://x", clientId: 'a"b' }, "t"),
      /-a a%22b@https%3A%2F%2Fx /,
    );
  });
});

describe("Linux: secret-tool", () => {
  const bus = { DBUS_SESSION_BUS_ADDRESS: "unix:path=/run/user/1000/bus" };

  test("store reads the token on stdin; the argv holds the label and attributes only", async () => {
    const { run, calls } = recorder([{}]);
    await secretService(bus, run).write(ITEM, TOKEN);
    assert.deepEqual(calls, [
      {
        file: "secret-tool",
        args: [
          "store",
          "--label=nix-cache-login: https://sso.example.org/realms/nix (nix-cache)",
          "service",
          "nix-cache-login",
          "issuer",
          ITEM.issuer,
          "client_id",
          ITEM.clientId,
        ],
        stdin: TOKEN,
      },
    ]);
  });

  test("store: a secret over 8192 bytes (secret-tool would keep the first 8192 and exit 0) is refused, no process started", async () => {
    const whole = recorder([{}]);
    await secretService(bus, whole.run).write(ITEM, "R".repeat(8192));
    assert.equal(whole.calls[0]?.stdin.length, 8192);
    const none = recorder([]);
    await assert.rejects(secretService(bus, none.run).write(ITEM, "R".repeat(8193)), {
      failure: "too_large",
      message: "the refresh token is longer than the 8192 bytes secret-tool can store",
    });
    // Bytes, not characters: 4097 two-byte characters are 8194 bytes.
    await assert.rejects(secretService(bus, none.run).write(ITEM, "\u00e9".repeat(4097)), {
      failure: "too_large",
    });
    assert.equal(none.calls.length, 0);
  });

  test("lookup: no answer is told apart by `search` (a locked item is listed, a missing one is not)", async () => {
    const locked = recorder([
      { code: 1 },
      { stdout: "[/org/freedesktop/secrets/collection/login/1]\nlabel = x\n" },
    ]);
    await assert.rejects(secretService(bus, locked.run).read(ITEM), { failure: "locked" });
    assert.equal(locked.calls[1]?.args[0], "search");
    const missing = recorder([{ code: 1 }, { code: 0 }]);
    assert.equal(await secretService(bus, missing.run).read(ITEM), undefined);
  });

  test("no session bus: unavailable without starting a process; a missing secret-tool says which package", async () => {
    const none = recorder([]);
    await assert.rejects(secretService({}, none.run).read(ITEM), { failure: "unavailable" });
    assert.equal(none.calls.length, 0);
    assert.equal(
      keychainUnavailable({}, "linux"),
      "no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is not set)",
    );
    assert.equal(keychainUnavailable(bus, "linux"), undefined);
    assert.equal(keychainUnavailable({}, "darwin"), undefined);
    await assert.rejects(secretService(bus, recorder([{ missing: true }]).run).read(ITEM), {
      failure: "unavailable",
      message: /libsecret-tools/,
    });
  });
});
