// The netrc editor against a corpus of hand-written files (test/fixtures/netrc/NAME.netrc, with the
// expected results NAME.upsert and NAME.remove written by hand), and curl as a second reader: the
// files are handled as latin1 strings, exactly as the file layer reads them.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { NETRC_LOGIN } from "../../src/netrc/file.ts";
import {
  NetrcSyntaxError,
  findEntry,
  formatEntry,
  parseNetrc,
  passwordLineBytes,
  removeEntries,
  upsertEntry,
  type NetrcEntry,
} from "../../src/netrc/netrc.ts";

const FIXTURES = fileURLToPath(new URL("../fixtures/netrc/", import.meta.url));
const HOST = "cache.example.org";
const OTHER = "other.example.com";
const TOKEN = "TOKEN";
/** Our entry as upsert writes it: one keyword per line, in the file's line ending. */
const oursIn = (text: string) =>
  [`machine ${HOST}`, `login ${NETRC_LOGIN}`, `password ${TOKEN}`].join(
    text.includes("\r\n") ? "\r\n" : "\n",
  );

function fixture(name: string, ext: "netrc" | "upsert" | "remove"): string | undefined {
  try {
    return readFileSync(join(FIXTURES, `${name}.${ext}`), "latin1");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
}

/** "login:password" of the entry curl picks for host, or null when it would send nothing. */
type Creds = string | null;
const ALICE = "alice:s3cret";
const ANON = "anonymous:guest@";
const OLD = "olduser:oldtoken";
const NEW = `${NETRC_LOGIN}:${TOKEN}`;

/**
 * For every corpus file: the credentials curl uses for HOST before the upsert, and for OTHER (which
 * the upsert must not change). Written by reading each file, not by running the code.
 */
interface Expectation {
  host: Creds;
  other: Creds;
  /** What had to go before an entry appended at the end (a line break, or an empty line to close a macdef). */
  appendedSeparator?: string;
  /**
   * Our entry shared a line with others: the upsert gives it lines of its own, so a logout after
   * it leaves the neighbours on lines of their own too (a line break where a blank was).
   */
  relined?: true;
  /** Where curl 7.88 (the testbed's) reads the file differently from current curl and the editor. */
  curl788?: { host: Creds; upserted: Creds };
}
const CORPUS: Record<string, Expectation> = {
  "one-line": { host: OLD, other: ALICE },
  "multi-line": { host: OLD, other: ALICE },
  "several-per-line": { host: OLD, other: ALICE, relined: true },
  "default-after": { host: ANON, other: ALICE },
  "default-before-host": { host: ANON, other: ANON },
  "default-after-host": { host: OLD, other: ALICE },
  "default-same-line": { host: ANON, other: ALICE, relined: true },
  macdef: { host: OLD, other: ALICE },
  "macdef-default": { host: ANON, other: ANON },
  "macdef-open-at-eof": { host: null, other: ALICE, appendedSeparator: "\n" },
  "macdef-open-no-newline": { host: null, other: ALICE, appendedSeparator: "\n\n" },
  // Current curl reads a value literally, so `password macdef` is a password. curl <= 8.x before the
  // 2026 scanner rewrite (7.88 here) starts a macro at it when the entry is not the host's, and then
  // skips the next line, whatever it holds, up to an empty line.
  "macdef-as-value": { host: OLD, other: "alice:macdef", curl788: { host: null, upserted: null } },
  quoted: { host: 'old user:old "token" with spaces', other: 'alice smith:pa ss"word\\' },
  comments: { host: OLD, other: ALICE },
  "comments-only": { host: null, other: null },
  crlf: { host: OLD, other: ALICE },
  "crlf-new": { host: ANON, other: ALICE },
  "crlf-append": { host: null, other: ALICE },
  duplicates: { host: "first:one", other: ALICE },
  "uppercase-keywords": { host: OLD, other: ALICE },
  "no-trailing-newline": { host: null, other: ALICE, appendedSeparator: "\n" },
  "no-trailing-newline-host": { host: OLD, other: ALICE },
  empty: { host: null, other: null },
  latin1: { host: OLD, other: "J\xe9r\xf4me:caf\xe9\xff\xfe" },
  "port-is-another-machine": { host: null, other: ALICE },
  "blanks-and-tabs": { host: OLD, other: ALICE },
  current: { host: NEW, other: ALICE },
};

function credsOf(entry: NetrcEntry | undefined): Creds {
  return entry === undefined ? null : `${entry.login ?? ""}:${entry.password ?? ""}`;
}

function hostEntries(text: string, host = HOST): NetrcEntry[] {
  return parseNetrc(text).entries.filter((e) => e.kind === "machine" && e.machine === host);
}

/** The exact bytes of every entry that is not HOST's, in order. */
function unrelatedEntries(text: string): string[] {
  return parseNetrc(text)
    .entries.filter((e) => !(e.kind === "machine" && e.machine === HOST))
    .map((e) => text.slice(e.start, e.end));
}

const names = readdirSync(FIXTURES)
  .filter((f) => f.endsWith(".netrc"))
  .map((f) => f.slice(0, -".netrc".length))
  .sort();

test("the corpus on disk and the table of expectations list the same files", () => {
  assert.deepEqual(names, Object.keys(CORPUS).sort());
  assert.ok(names.length >= 27);
  // The corpus really holds the awkward bytes it claims to.
  assert.match(fixture("crlf", "netrc") ?? "", /\r\n/);
  assert.match(fixture("latin1", "netrc") ?? "", /[\xe9\xff]/);
  assert.doesNotMatch(fixture("no-trailing-newline", "netrc") ?? "", /\n$/);
  assert.equal(fixture("empty", "netrc"), "");
  // latin1 bytes that are not valid UTF-8 (0xff, 0xfe) survive a latin1 read unchanged.
  const raw = readFileSync(join(FIXTURES, "latin1.netrc"));
  assert.equal(Buffer.from(fixture("latin1", "netrc") ?? "", "latin1").equals(raw), true);
  assert.throws(() => new TextDecoder("utf-8", { fatal: true }).decode(raw));
});

for (const name of names) {
  const input = fixture(name, "netrc") as string;
  const expectedUpsert = fixture(name, "upsert");
  const expectedRemove = fixture(name, "remove");
  const want = CORPUS[name] ?? { host: null, other: null };

  describe(`netrc corpus: ${name}`, () => {
    test("parses, and a no-op edit returns the identical bytes", () => {
      const netrc = parseNetrc(input);
      assert.equal(netrc.text, input);
      assert.equal(removeEntries(input, "absent.example.net"), input);
      let previousEnd = 0;
      for (const e of netrc.entries) {
        assert.ok(
          e.start >= previousEnd && e.end > e.start && e.end <= input.length,
          `range of ${e.machine}`,
        );
        assert.match(input.slice(e.start, e.end), e.kind === "machine" ? /^machine\s/i : /^default/i);
        assert.equal(e.line, input.slice(0, e.start).split("\n").length);
        previousEnd = e.end;
      }
    });

    test("finds the entry curl would use, for our host and for an unrelated one", () => {
      const netrc = parseNetrc(input);
      assert.equal(credsOf(findEntry(netrc, HOST)), want.host);
      assert.equal(credsOf(findEntry(netrc, HOST.toUpperCase())), want.host);
      assert.equal(credsOf(findEntry(netrc, OTHER)), want.other);
    });

    test("upsert writes the expected bytes", () => {
      assert.notEqual(expectedUpsert, undefined, `${name}.upsert is missing`);
      assert.equal(upsertEntry(input, HOST, NETRC_LOGIN, TOKEN), expectedUpsert);
    });

    test("upsert: exactly one entry for the host, the first curl matches, before any default", () => {
      const up = upsertEntry(input, HOST, NETRC_LOGIN, TOKEN);
      const ours = hostEntries(up);
      assert.equal(ours.length, 1);
      const netrc = parseNetrc(up);
      const entries = netrc.entries;
      const first = findEntry(netrc, HOST);
      assert.ok(first !== undefined);
      assert.equal(first.kind, "machine");
      assert.equal(
        first,
        entries.find((e) => e.kind === "machine" && e.machine === HOST),
      );
      assert.equal(credsOf(first), NEW);
      assert.equal(up.slice(first.start, first.end), oursIn(input));
      const firstDefault = entries.findIndex((e) => e.kind === "default");
      if (firstDefault !== -1) assert.ok(entries.indexOf(first) < firstDefault);
      // The unrelated host still gets what it got before.
      assert.equal(credsOf(findEntry(parseNetrc(up), OTHER)), want.other);
    });

    test("upsert keeps every unrelated byte", () => {
      const up = upsertEntry(input, HOST, NETRC_LOGIN, TOKEN);
      assert.deepEqual(unrelatedEntries(up), unrelatedEntries(input));
      // Taking our entry out again gives what taking the old ones out of the input gives (plus
      // the line break or empty line that had to go before an appended entry).
      const relined = (t: string) => (want.relined === true ? t.replace(/ (?=machine|default)/g, "\n") : t);
      assert.equal(
        removeEntries(up, HOST),
        relined(removeEntries(input, HOST)) + (want.appendedSeparator ?? ""),
      );
    });

    test("upsert is idempotent, and a new token changes only the token", () => {
      const up = upsertEntry(input, HOST, NETRC_LOGIN, TOKEN);
      assert.equal(upsertEntry(up, HOST, NETRC_LOGIN, TOKEN), up);
      assert.equal(upsertEntry(up, HOST.toUpperCase(), NETRC_LOGIN, TOKEN).toLowerCase(), up.toLowerCase());
      const rotated = upsertEntry(up, HOST, NETRC_LOGIN, "TOKEN2");
      assert.equal(rotated, up.replace(`password ${TOKEN}`, "password TOKEN2"));
      assert.equal(rotated.length, up.length + 1);
    });

    test("remove takes out only the host's entries", () => {
      const removed = removeEntries(input, HOST);
      if (expectedRemove !== undefined) assert.equal(removed, expectedRemove);
      else {
        assert.equal(hostEntries(input).length, 0, `${name}.remove is missing`);
        assert.equal(removed, input);
      }
      assert.equal(hostEntries(removed).length, 0);
      assert.deepEqual(unrelatedEntries(removed), unrelatedEntries(input));
      assert.equal(removeEntries(input, "CACHE.Example.Org"), removed);
      assert.equal(removeEntries(removed, HOST), removed);
      // After a remove, only a `default` (if any) is left for curl to use.
      assert.notEqual(findEntry(parseNetrc(removed), HOST)?.kind, "machine");
      // Logout after login leaves exactly what a plain remove leaves.
      const relined = want.relined === true ? removed.replace(/ (?=machine|default)/g, "\n") : removed;
      assert.equal(
        removeEntries(upsertEntry(input, HOST, NETRC_LOGIN, TOKEN), HOST),
        relined + (want.appendedSeparator ?? ""),
      );
    });
  });
}

describe("netrc parsing details", () => {
  test("quoted tokens: escapes and spaces are decoded; a quoted keyword is a plain word", () => {
    const netrc = parseNetrc(fixture("quoted", "netrc") as string);
    assert.deepEqual(
      netrc.entries.map((e) => [e.machine, e.login, e.password]),
      [
        [OTHER, "alice smith", 'pa ss"word\\'],
        [HOST, "old user", 'old "token" with spaces'],
        ["third.example.net", "bob", `machine ${HOST} login x password y`],
      ],
    );
    const text = 'machine a login "tab\\there" password "nl\\nx\\ry"\n"machine" b login c\n';
    const [a, ...rest] = parseNetrc(text).entries;
    assert.equal(a?.login, "tab\there");
    assert.equal(a?.password, "nl\nx\ry");
    // `"machine" b` does not start an entry: its words belong to the entry before.
    assert.equal(rest.length, 0);
    assert.equal(a?.end, text.length - 1);
  });

  test("macdef bodies are skipped up to the first empty line, whatever they contain", () => {
    const netrc = parseNetrc(fixture("macdef", "netrc") as string);
    assert.deepEqual(
      netrc.entries.map((e) => [e.machine, e.login]),
      [
        [OTHER, "alice"],
        [HOST, "olduser"],
      ],
    );
    // An empty line made of CRs ends the body too.
    const crlf = "macdef m\r\nmachine a login x\r\n\r\nmachine b login y\r\n";
    assert.deepEqual(
      parseNetrc(crlf).entries.map((e) => e.machine),
      ["b"],
    );
    // A `macdef` that is a value is a value, and so is a keyword after `machine`.
    assert.deepEqual(
      parseNetrc("machine macdef login x password macdef\nmachine b login login\n").entries.map((e) => [
        e.machine,
        e.login,
        e.password,
      ]),
      [
        ["macdef", "x", "macdef"],
        ["b", "login", undefined],
      ],
    );
    // A quote inside a body is not a token, so it cannot be unterminated.
    assert.equal(parseNetrc('macdef m\necho "oops\n\n').entries.length, 0);
  });

  test("comments: a `#` line (after blanks) is skipped, a mid-line `#` is an ordinary word", () => {
    const netrc = parseNetrc(fixture("comments", "netrc") as string);
    assert.deepEqual(
      netrc.entries.map((e) => [e.machine, e.login]),
      [
        [OTHER, "alice"],
        [HOST, "olduser"],
        ["third.example.net", "bob"],
      ],
    );
    const hash = parseNetrc('machine a login #user password p#ss\n# "unterminated in a comment\n').entries[0];
    assert.equal(hash?.login, "#user");
    assert.equal(hash?.password, "p#ss");
  });

  test("keywords are case-insensitive, host names are compared case-insensitively", () => {
    const netrc = parseNetrc("MACHINE Cache.Example.ORG LOGIN a PASSWORD b\nDEFAULT Login c Password d\n");
    assert.deepEqual(
      netrc.entries.map((e) => [e.kind, e.machine, e.login, e.password]),
      [
        ["machine", HOST, "a", "b"],
        ["default", undefined, "c", "d"],
      ],
    );
    assert.equal(findEntry(netrc, "CACHE.example.org")?.login, "a");
    assert.equal(findEntry(netrc, "elsewhere.example")?.kind, "default");
  });

  test("the first of several entries for a host is the one that counts", () => {
    const netrc = parseNetrc(fixture("duplicates", "netrc") as string);
    assert.equal(hostEntries(netrc.text).length, 3);
    assert.equal(findEntry(netrc, HOST)?.login, "first");
    // Within one entry, the first login/password wins too.
    assert.equal(
      findEntry(parseNetrc("machine a login x login y password p password q"), "a")?.password,
      "p",
    );
  });

  test("an entry for host:port is a different machine (curl matches the host only)", () => {
    const up = upsertEntry(fixture("port-is-another-machine", "netrc") as string, HOST, NETRC_LOGIN, TOKEN);
    assert.match(up, /^machine cache\.example\.org:8443 login withport password portpw\n/);
    assert.equal(findEntry(parseNetrc(up), HOST)?.login, NETRC_LOGIN);
  });
});

describe("netrc syntax errors name the line", () => {
  const cases: [string, string, number, string][] = [
    ["unterminated quote", 'machine a login "alice password b\n', 1, "unterminated quoted token"],
    [
      "unterminated quote after blank lines and comments",
      '# c\nmachine x login y password z\n\nmachine a\n  password "abc\n',
      5,
      "unterminated quoted token",
    ],
    ["unterminated quote, CRLF", 'machine a\r\nlogin b\r\npassword "abc\r\n', 3, "unterminated quoted token"],
    ["unterminated quote at EOF", 'machine a login b password "abc', 1, "unterminated quoted token"],
    [
      "escaped line break in a quote",
      'machine a login b password "abc\\\ndef"\n',
      1,
      "unterminated quoted token",
    ],
    ["quote ended by a backslash at EOF", 'machine a password "abc\\', 1, "unterminated quoted token"],
    ["`machine` at EOF", "machine a login b password c\nmachine", 2, "`machine` has no host name"],
    [
      "`machine` at EOF after blanks",
      "machine a login b password c\n\n  machine  \n\n",
      3,
      "`machine` has no host name",
    ],
    ["`password` without value", "machine a\n  login b\n  password\n", 3, "`password` has no value"],
    ["`login` without value", "machine a login", 1, "`login` has no value"],
    ["`account` without value, CRLF", "machine a\r\n\r\naccount\r\n", 3, "`account` has no value"],
  ];
  for (const [title, text, line, message] of cases) {
    test(title, () => {
      for (const op of [
        () => parseNetrc(text),
        () => upsertEntry(text, HOST, NETRC_LOGIN, TOKEN),
        () => removeEntries(text, HOST),
      ]) {
        assert.throws(op, (e: unknown) => {
          assert.ok(e instanceof NetrcSyntaxError);
          assert.equal(e.line, line);
          assert.equal(e.message, `line ${line}: ${message}`);
          return true;
        });
      }
    });
  }

  test("a `macdef` with no name or body is not an error", () => {
    assert.equal(parseNetrc("machine a login b password c macdef").entries[0]?.password, "c");
  });
});

describe("formatEntry", () => {
  const entry = (login: string, password: string) => `machine ${HOST}\nlogin ${login}\npassword ${password}`;

  test("plain values are written bare, one keyword per line", () => {
    assert.equal(formatEntry(HOST, NETRC_LOGIN, "eyJ.a-b_c.d~e"), entry(NETRC_LOGIN, "eyJ.a-b_c.d~e"));
    assert.equal(formatEntry(HOST, "a#b", "x"), entry("a#b", "x"));
    assert.equal(formatEntry(HOST, "l", "x", "\r\n"), `machine ${HOST}\r\nlogin l\r\npassword x`);
  });

  test("values curl would split or misread are quoted and escaped", () => {
    assert.equal(formatEntry(HOST, "a b", "x"), entry('"a b"', "x"));
    assert.equal(formatEntry(HOST, "l", 'q"uote'), entry("l", '"q\\"uote"'));
    assert.equal(formatEntry(HOST, "l", "back\\slash"), entry("l", '"back\\\\slash"'));
    assert.equal(formatEntry(HOST, "l", "#hash"), entry("l", '"#hash"'));
    assert.equal(formatEntry(HOST, "l", ""), entry("l", '""'));
    assert.equal(formatEntry(HOST, "l", "t\tn\nr\r"), entry("l", '"t\\tn\\nr\\r"'));
  });

  test("the password line's length counts the keyword, the quoting and the line break", () => {
    assert.equal(passwordLineBytes("abc"), "password abc\n".length);
    assert.equal(passwordLineBytes("abc", "\r\n"), "password abc\r\n".length);
    assert.equal(passwordLineBytes('a"b'), 'password "a\\"b"\n'.length);
  });

  test("what it writes parses back to the same values", () => {
    for (const value of ["plain", "a b", 'q"\\', "#x", "", "tab\there", "caf\xe9", "macdef", "machine"]) {
      const entry = parseNetrc(formatEntry(HOST, value, value) + "\n").entries;
      assert.equal(entry.length, 1);
      assert.equal(entry[0]?.login, value);
      assert.equal(entry[0]?.password, value);
    }
  });
});

// curl as the second reader: the testbed's curl 7.88 sends the netrc entry as Basic auth to a
// server on 127.0.0.1 that records it.
describe("curl reads the netrc the way the editor assumes", () => {
  let server: Server;
  let port = 0;
  let dir = "";
  const seen = new Map<string, string | undefined>();
  let n = 0;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "netrc-curl-"));
    server = createServer((req, res) => {
      seen.set(req.url ?? "", req.headers.authorization);
      res.end("ok");
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as AddressInfo).port;
  });
  after(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await rm(dir, { recursive: true, force: true });
  });

  async function curlCreds(text: string, host: string): Promise<Creds> {
    const file = join(dir, `netrc-${++n}`);
    await writeFile(file, text, "latin1");
    const path = `/req-${n}`;
    const { stdout } = await promisify(execFile)("curl", [
      "--netrc-file",
      file,
      "-s",
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      "--max-time",
      "10",
      "--resolve",
      `${host}:${port}:127.0.0.1`,
      `http://${host}:${port}${path}`,
    ]);
    assert.equal(stdout, "200");
    assert.ok(seen.has(path), "the request reached the server");
    const auth = seen.get(path);
    if (auth === undefined) return null;
    assert.match(auth, /^Basic /);
    return Buffer.from(auth.slice("Basic ".length), "base64").toString("latin1");
  }

  for (const name of names) {
    test(`${name}: curl agrees before and after the upsert`, async () => {
      const input = fixture(name, "netrc") as string;
      const want = CORPUS[name] ?? { host: null, other: null };
      const peer = want.curl788 ?? { host: want.host, upserted: NEW };
      const up = upsertEntry(input, HOST, NETRC_LOGIN, TOKEN);
      assert.equal(await curlCreds(input, HOST), peer.host);
      assert.equal(await curlCreds(up, HOST), peer.upserted);
      assert.equal(await curlCreds(up, OTHER), want.other);
      // After a logout only a `default` can still answer for the host.
      const removed = removeEntries(input, HOST);
      const left = credsOf(findEntry(parseNetrc(removed), HOST));
      assert.ok(left === null || left === ANON);
      assert.equal(await curlCreds(removed, HOST), left);
    });
  }

  test("a quoted token with escapes reaches curl intact", async () => {
    const token = 'we ird"to\\ken';
    const text = upsertEntry(fixture("one-line", "netrc") as string, HOST, NETRC_LOGIN, token);
    assert.equal(await curlCreds(text, HOST), `${NETRC_LOGIN}:${token}`);
  });
});

describe("issue 12: hostile bytes in the netrc", () => {
  test('a quoted token directly followed by a word (`"a"MACHINE`): our password is not glued onto it', () => {
    const text =
      'machine cache.example.org login x password "a"MACHINE other.example.com login o password p\n';
    const out = upsertEntry(text, HOST, NETRC_LOGIN, TOKEN);
    assert.match(out, /\nMACHINE other\.example\.com login o password p\n$/);
    const entries = parseNetrc(out).entries.map((e) => [e.machine, e.password]);
    assert.deepEqual(entries, [
      [HOST, TOKEN],
      [OTHER, "p"],
    ]);
  });

  test("a NUL byte anywhere is a syntax error naming its line: curl stops reading there", () => {
    assert.throws(
      () => parseNetrc("machine a login b password c\n# x\u0000\nmachine d login e password f\n"),
      (e: unknown) =>
        e instanceof NetrcSyntaxError &&
        e.message === "line 2: contains a NUL byte, where curl stops reading the file",
    );
  });
});
