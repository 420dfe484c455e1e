import assert from "node:assert/strict";
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { CliError } from "../../src/errors.ts";
import {
  checkTokenLength,
  removeNetrcEntries,
  removeNetrcEntry,
  upsertNetrcEntries,
  upsertNetrcEntry,
} from "../../src/netrc/file.ts";
import { findEntry, parseNetrc } from "../../src/netrc/netrc.ts";

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "ncl-netrc-file-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test("creates missing parent directories 0700 and the netrc 0600", async () => {
  const path = join(dir, "a", "b", "netrc");
  await upsertNetrcEntry(path, "cache.example.org", "tok-1");
  assert.equal(
    await readFile(path, "utf8"),
    "machine cache.example.org\nlogin nix-cache-login\npassword tok-1\n",
  );
  assert.equal((await stat(path)).mode & 0o777, 0o600);
  assert.equal((await stat(join(dir, "a"))).mode & 0o777, 0o700);
  assert.equal((await stat(join(dir, "a", "b"))).mode & 0o777, 0o700);
  // No temp or lock file is left behind.
  assert.deepEqual(await readdir(join(dir, "a", "b")), ["netrc"]);
});

test("an existing directory keeps its mode; a stricter file mode is kept", async () => {
  const sub = join(dir, "open");
  await mkdir(sub, { mode: 0o755 });
  const path = join(sub, "netrc");
  await writeFile(path, "machine other login a password b\n", { mode: 0o400 });
  const warning = await upsertNetrcEntry(path, "cache.example.org", "tok-2");
  assert.equal(warning, undefined);
  assert.equal((await stat(sub)).mode & 0o777, 0o755);
  assert.equal((await stat(path)).mode & 0o777, 0o400);
});

test("a group-readable netrc is tightened to 0600, with a warning", async () => {
  const path = join(dir, "loose-netrc");
  await writeFile(path, "", { mode: 0o644 });
  const warning = await upsertNetrcEntry(path, "cache.example.org", "tok-3");
  assert.match(warning ?? "", /mode tightened from 0644 to 0600/);
  assert.equal((await stat(path)).mode & 0o777, 0o600);
});

test("a token whose password line would pass curl's 4095-byte line limit is refused; the netrc is unchanged", async () => {
  const path = join(dir, "limit-netrc");
  const original = "# keep me\nmachine cache.example.org login x password old\n";
  await writeFile(path, original, { mode: 0o600 });
  const before = await stat(path);
  // `password ` + 4085 bytes + CRLF is 4096: one byte too many in a CRLF file, so refused anywhere.
  await assert.rejects(upsertNetrcEntry(path, "cache.example.org", "a".repeat(4085)), (e: unknown) => {
    assert.ok(e instanceof CliError);
    assert.match(
      e.message,
      /is 4085 bytes; its netrc line would be 4096 bytes, and curl up to 8\.10 \(and the Nix built on it\) skips a netrc line over 4095 bytes/,
    );
    assert.match(e.hint ?? "", /lightweight access token/);
    return true;
  });
  assert.equal(await readFile(path, "utf8"), original);
  assert.equal((await stat(path)).mtimeMs, before.mtimeMs);
  // 4084 bytes fits (4095 with CRLF, 4094 with LF), on a line of its own.
  await upsertNetrcEntry(path, "cache.example.org", "a".repeat(4084));
  const text = await readFile(path, "utf8");
  assert.match(text, new RegExp(`\npassword a{4084}\n$`));
  assert.equal(Math.max(...text.split("\n").map((l) => l.length + 1)), 4094);
});

test("checkTokenLength: a warning over 3 KB that names lightweight access tokens, none below", () => {
  assert.equal(checkTokenLength("a".repeat(3072), "cache.example.org"), undefined);
  assert.match(
    checkTokenLength("a".repeat(3073), "cache.example.org") ?? "",
    /is 3073 bytes, close to curl's netrc limit .*lightweight access token/,
  );
  assert.throws(() => checkTokenLength("a\nb", "cache.example.org"), /contains a line break/);
});

test("a symlinked netrc: the target is replaced, the link stays", async () => {
  const target = join(dir, "real-netrc");
  const link = join(dir, "link-netrc");
  await writeFile(target, "", { mode: 0o600 });
  await symlink(target, link);
  await upsertNetrcEntry(link, "cache.example.org", "tok-4");
  assert.equal((await lstat(link)).isSymbolicLink(), true);
  assert.match(await readFile(target, "utf8"), /password tok-4/);
});

test("a netrc that cannot be parsed is named with its line and left unchanged", async () => {
  const path = join(dir, "broken-netrc");
  const original = 'machine a login b password c\nmachine d password "open\n';
  await writeFile(path, original, { mode: 0o600 });
  await assert.rejects(
    upsertNetrcEntry(path, "cache.example.org", "tok"),
    /broken-netrc: line 2: unterminated quoted token/,
  );
  await assert.rejects(removeNetrcEntry(path, "cache.example.org"), /line 2/);
  assert.equal(await readFile(path, "utf8"), original);
});

test("remove takes out only the host's entries and reports whether it did", async () => {
  const path = join(dir, "rm-netrc");
  await writeFile(path, "machine a login b password c\r\nmachine cache.example.org login x password y\r\n", {
    mode: 0o600,
  });
  assert.equal(await removeNetrcEntry(path, "cache.example.org"), true);
  assert.equal(await readFile(path, "utf8"), "machine a login b password c\r\n");
  assert.equal(await removeNetrcEntry(path, "cache.example.org"), false);
  assert.equal(await removeNetrcEntry(join(dir, "absent"), "cache.example.org"), false);
});

test("several hosts: one write puts the token in each, unrelated entries between and around stay byte for byte", async () => {
  const path = join(dir, "multi-netrc");
  const original = [
    "# mine",
    "machine github.com login octocat password gh",
    "machine a.example.org login nix-cache-login password old-a",
    "machine example.org",
    "  login someone",
    "  password p2",
    "",
    "machine b.example.org login nix-cache-login password old-b",
    "default login anonymous password guest",
    "",
  ].join("\n");
  await writeFile(path, original, { mode: 0o600 });
  await upsertNetrcEntries(path, ["a.example.org", "b.example.org", "c.example.org"], "tok-m");
  const netrc = parseNetrc(await readFile(path, "latin1"));
  for (const host of ["a.example.org", "b.example.org", "c.example.org"]) {
    const e = findEntry(netrc, host);
    assert.equal(e?.kind, "machine", `${host} comes before default`);
    assert.equal(e?.password, "tok-m", host);
    assert.equal(netrc.entries.filter((x) => x.machine === host).length, 1, host);
  }
  assert.deepEqual(await readdir(dir).then((f) => f.filter((n) => n.startsWith("multi-netrc"))), [
    "multi-netrc",
  ]);
  assert.deepEqual(
    await removeNetrcEntries(path, ["a.example.org", "b.example.org", "c.example.org", "d.example.org"]),
    ["a.example.org", "b.example.org", "c.example.org"],
  );
  assert.equal(
    await readFile(path, "latin1"),
    original
      .replace("machine a.example.org login nix-cache-login password old-a\n", "")
      .replace("machine b.example.org login nix-cache-login password old-b\n", ""),
  );
  await assert.rejects(
    upsertNetrcEntries(path, ["a.example.org", "b.example.org"], "a".repeat(4096)),
    CliError,
  );
  assert.equal(findEntry(parseNetrc(await readFile(path, "latin1")), "a.example.org")?.kind, "default");
});
