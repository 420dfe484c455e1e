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
