// Token state file names: readable, one per (issuer, client), always a safe single path component.
import assert from "node:assert/strict";
import { test } from "node:test";
import { stateFileName, StateStore } from "../../src/store/state.ts";

test("the state file is named by client and issuer, percent-encoded", () => {
  assert.equal(
    stateFileName("https://sso.example.org/realms/nix", "nix-cache"),
    "nix-cache@https%3A%2F%2Fsso.example.org%2Frealms%2Fnix.json",
  );
  assert.equal(
    new StateStore("/state", "http://127.0.0.1:8080/realms/test", "nix-cache").file,
    "/state/nix-cache@http%3A%2F%2F127.0.0.1%3A8080%2Frealms%2Ftest.json",
  );
});

test("different issuers or clients never share a file, whatever their characters", () => {
  const pairs: [string, string][] = [
    ["https://a.example/realms/x", "c"],
    ["https://a.example/realms/x/", "c"],
    ["http://a.example/realms/x", "c"],
    ["https://a.example/realms/x@c", ""],
    ["https://a.example/realms/x", "c@d"],
    ["https://a.example/realms/x", "../../etc/passwd"],
    ["https://a.example/realms/x", ".."],
    ["https://a.example/realms/ünï", "c"],
  ];
  const names = pairs.map(([issuer, client]) => stateFileName(issuer, client));
  assert.equal(new Set(names).size, names.length, names.join("\n"));
  for (const name of names) {
    assert.ok(!name.includes("/") && name !== "." && name !== "..", name);
    assert.ok(name.endsWith(".json"), name);
  }
});

test("a name too long for a file system is a hash, still per issuer and client", () => {
  const long = `https://sso.example.org/realms/${"r".repeat(300)}`;
  const a = stateFileName(long, "nix-cache");
  const b = stateFileName(long, "other");
  assert.match(a, /^[0-9a-f]{32}\.json$/);
  assert.notEqual(a, b);
  assert.equal(stateFileName(long, "nix-cache"), a, "stable");
  // Readable up to 200 bytes, which leaves room for `.lock` and the temp file's suffix within
  // 255: "nix-cache@" + "https%3A%2F%2Fe.org%2F" + r... + ".json".
  const at = (n: number) => stateFileName(`https://e.org/${"r".repeat(n)}`, "nix-cache");
  assert.equal(at(163).length, 200);
  assert.ok(at(163).startsWith("nix-cache@https%3A%2F%2Fe.org%2F"), at(163));
  assert.match(at(164), /^[0-9a-f]{32}\.json$/);
});

test("a state with a field of the wrong JSON type is corrupt (state_corrupt), not an internal error", async () => {
  const { mkdtemp, mkdir, rm, writeFile } = await import("node:fs/promises");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  const { CorruptStateError } = await import("../../src/store/state.ts");
  const dir = await mkdtemp(join(tmpdir(), "ncl-state-"));
  try {
    const stateDir = join(dir, "state");
    await mkdir(stateDir, { mode: 0o700 });
    const issuer = "https://sso.example.org/realms/nix";
    const store = new StateStore(stateDir, issuer, "nix-cache");
    const good = {
      version: 1,
      issuer,
      client_id: "nix-cache",
      mode: "user",
      access_token: "a",
      access_token_expires_at: "2030-01-01T00:00:00.000Z",
      refresh_token: "r",
      refresh_token_expires_at: null,
      clock: { offset_ms: 0, measured_at: "2030-01-01T00:00:00.000Z" },
      session_ended: { at: "2030-01-01T00:00:00.000Z", description: null },
    };
    await writeFile(store.file, JSON.stringify(good), { mode: 0o600 });
    assert.deepEqual(store.read(), good, "a state of the right types is read");
    const wrong: [string, unknown][] = [
      ["access_token_expires_at", 1893456000],
      ["access_token", ["a"]],
      ["refresh_token", 7],
      ["refresh_token_expires_at", {}],
      ["refresh_token_offline", "yes"],
      ["username", { name: "x" }],
      ["mode", "root"],
      ["clock", []],
      ["clock", { offset_ms: "0", measured_at: "2030-01-01T00:00:00.000Z" }],
      ["discovery", { fetched_at: "2030-01-01T00:00:00.000Z", metadata: [] }],
      ["session_ended", "2030-01-01T00:00:00.000Z"],
      ["session_ended", { at: 1, description: null }],
    ];
    for (const [key, value] of wrong) {
      await writeFile(store.file, JSON.stringify({ ...good, [key]: value }), { mode: 0o600 });
      assert.throws(
        () => store.read(),
        (e: unknown) => e instanceof CorruptStateError && e.code === "state_corrupt" && e.hint !== undefined,
        `${key}: ${JSON.stringify(value)}`,
      );
    }
    for (const text of ["[]", "null", "1", '"x"']) {
      await writeFile(store.file, text, { mode: 0o600 });
      assert.throws(() => store.read(), CorruptStateError, text);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
