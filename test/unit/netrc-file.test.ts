import assert from "node:assert/strict";
import {
  chmod,
  chown,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  stat,
  symlink,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { CliError } from "../../src/errors.ts";
import {
  checkTokenLength,
  removeNetrcEntries,
  removeNetrcEntry,
  upsertNetrcEntries,
  upsertNetrcEntry,
} from "../../src/netrc/file.ts";
import { findEntry, parseNetrc } from "../../src/netrc/netrc.ts";
import { ensureUser, runAs, USER_A, USER_B, type TestUser } from "../support/users.ts";

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
  assert.throws(() => checkTokenLength("a\nb", "cache.example.org"), /contains the character U\+000A/);
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

// ---- Issue 12: files another user could have written, and tokens that could break the file ----

test("a token outside RFC 6750 b64token (U+010A, NUL, blank, quote) is refused; nothing is written", async () => {
  const path = join(dir, "inject-netrc");
  const original = "machine other.example login x password keep\n";
  await writeFile(path, original, { mode: 0o600 });
  for (const [token, shown] of [
    // latin1 turns U+010A into 0x0A: a newline, and an entry of the provider's choosing.
    ["abc\u010amachine evil.example login x password injected", "U+010A"],
    ["abc\u0000def", "U+0000"],
    ["abc def", "U+0020"],
    ['abc"def', '"\\"" (U+0022)'],
    ["abc\ndef", "U+000A"],
  ] as const) {
    await assert.rejects(upsertNetrcEntry(path, "cache.example.org", token), (e: unknown) => {
      assert.ok(e instanceof CliError);
      assert.ok(e.message.includes(shown), e.message);
      assert.match(e.message, /not allowed in a Bearer token \(RFC 6750 b64token\); nothing was written$/);
      return true;
    });
  }
  assert.equal(await readFile(path, "latin1"), original);
  // Every b64token character is fine, `=` only at the end.
  await upsertNetrcEntry(path, "cache.example.org", "aZ09-._~+/==");
  assert.match(await readFile(path, "utf8"), /password aZ09-\._~\+\/==\n$/);
});

test("a NUL byte in the netrc is a syntax error (curl stops reading there); the file is left alone", async () => {
  const path = join(dir, "nul-netrc");
  const original = "machine a login b password c\nmachine d\u0000 login e password f\n";
  await writeFile(path, original, { mode: 0o600 });
  await assert.rejects(
    upsertNetrcEntry(path, "cache.example.org", "tok"),
    /nul-netrc: line 2: contains a NUL byte, where curl stops reading the file/,
  );
  assert.equal(await readFile(path, "latin1"), original);
});

describe("netrc owned or replaceable by another user (needs root)", () => {
  let a: TestUser;
  let b: TestUser;
  before(async () => {
    a = await ensureUser(USER_A);
    b = await ensureUser(USER_B);
    // The other users must reach the files below (mkdtemp made the directory 0700).
    await chmod(dir, 0o755);
  });

  test("root never writes its token into, or hands the file to, another user's netrc", async () => {
    const path = join(dir, "users-netrc");
    const original = "machine other.example login a password theirs\n";
    await writeFile(path, original, { mode: 0o600 });
    await chown(path, a.uid, a.gid);
    await assert.rejects(upsertNetrcEntry(path, "cache.example.org", "root-token-1"), (e: unknown) => {
      assert.ok(e instanceof CliError);
      assert.match(
        e.message,
        /users-netrc: the file is owned by uid \d+ \(ncl-test-a\), not by root .* who could read the token/,
      );
      return true;
    });
    const st = await stat(path);
    assert.equal(st.uid, a.uid);
    // What the other user can read holds no token of ours.
    const seen = await runAs(a, "cat", [path]);
    assert.equal(seen.code, 0, seen.stderr);
    assert.equal(seen.stdout, original);
  });

  test("a symlink planted at netrc_path into another user's file is not followed for writing", async () => {
    const theirs = join(dir, "their-netrc");
    await writeFile(theirs, "", { mode: 0o666 });
    await chown(theirs, b.uid, b.gid);
    const link = join(dir, "planted-link");
    await symlink(theirs, link);
    await assert.rejects(
      upsertNetrcEntry(link, "cache.example.org", "root-token-2"),
      /their-netrc: the file is owned by uid \d+.*\n?.*/,
    );
    const seen = await runAs(b, "cat", [theirs]);
    assert.equal(seen.stdout, "", "nothing was written into the other user's file");
  });

  test("a netrc in a directory others can write is refused, unless it is sticky and the file is ours", async () => {
    const open = join(dir, "world-writable");
    await mkdir(open);
    await chmod(open, 0o777);
    await assert.rejects(
      upsertNetrcEntry(join(open, "netrc"), "cache.example.org", "tok"),
      /world-writable\/netrc: its directory \S+ is writable by others \(mode 0777\) and not sticky, so another user could replace the file; nix-cache-login does not write a token there$/,
    );
    assert.deepEqual(await readdir(open), []);

    const sticky = join(dir, "sticky");
    await mkdir(sticky);
    await chmod(sticky, 0o1777);
    await upsertNetrcEntry(join(sticky, "netrc"), "cache.example.org", "tok-sticky");
    assert.match(await readFile(join(sticky, "netrc"), "utf8"), /password tok-sticky/);
    // Another user's file there (it made it first) is theirs: refused.
    const planted = join(sticky, "their-netrc");
    const made = await runAs(a, "sh", ["-c", `umask 077; : > '${planted}'`]);
    assert.equal(made.code, 0, made.stderr);
    await assert.rejects(
      upsertNetrcEntry(planted, "cache.example.org", "tok"),
      /their-netrc: the file is owned by uid/,
    );
    assert.equal((await stat(planted)).size, 0);
  });

  test("a lock another user holds fails at once, saying whose it is", async () => {
    const sticky = join(dir, "sticky-lock");
    await mkdir(sticky);
    await chmod(sticky, 0o1777);
    const path = join(sticky, "netrc");
    // A lock file, and the lock directory of a version before 0.2: the hint removes either.
    for (const [make, remove, undo] of [
      ["touch", "rm", "rm"],
      ["mkdir", "rmdir", "rmdir"],
    ] as const) {
      const made = await runAs(a, make, [`${path}.lock`]);
      assert.equal(made.code, 0, made.stderr);
      await assert.rejects(upsertNetrcEntry(path, "cache.example.org", "tok"), (e: unknown) => {
        assert.ok(e instanceof CliError);
        assert.match(
          e.message,
          new RegExp(
            `netrc\\.lock was made by uid ${a.uid} \\(ncl-test-a\\), not by you: another user's lock is not waited for`,
          ),
        );
        assert.ok(e.hint?.endsWith(`(\`${remove} ${path}.lock\`)`), e.hint);
        return true;
      });
      assert.equal((await runAs(a, undo, [`${path}.lock`])).code, 0);
    }
  });
});

test("netrc_path errors are one line naming the key and the path: too long, under a file, a directory", async () => {
  const long = join(dir, "n".repeat(300), "netrc");
  await assert.rejects(upsertNetrcEntry(long, "cache.example.org", "tok"), (e: unknown) => {
    assert.ok(e instanceof CliError);
    assert.equal(
      e.message,
      `netrc_path ${long}: cannot use the netrc: a name in the path is too long (the limit is 255 bytes)`,
    );
    return true;
  });
  const file = join(dir, "plain-file");
  await writeFile(file, "");
  await assert.rejects(
    upsertNetrcEntry(join(file, "netrc"), "cache.example.org", "tok"),
    new RegExp(
      `^CliError: netrc_path ${file}/netrc: cannot use the netrc: a part of the path is not a directory$`,
    ),
  );
  const directory = join(dir, "a-directory");
  await mkdir(directory);
  await assert.rejects(
    upsertNetrcEntry(directory, "cache.example.org", "tok"),
    /a-directory: it is not a regular file; nix-cache-login does not write a token there$/,
  );
});
