// Configuration: search order, TOML parsing, validation (every problem at once, each naming the file
// and the key), and path expansion. Real files in temp dirs; the environment is always an explicit
// object, never the real HOME.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { configCandidates, noConfigError, SYSTEM_CONFIG } from "../../src/config/find.ts";
import { loadConfig, validateConfig, type Config } from "../../src/config/load.ts";
import { CONFIG_KEYS } from "../../src/config/rules.ts";
import { isLoopbackHost } from "../../src/os/loopback-host.ts";
import { expandPath, stateDir, xdgDir } from "../../src/config/paths.ts";
import type { Env } from "../../src/os/env.ts";
import { CliError, ExitCode } from "../../src/errors.ts";

const GOOD = `issuer = "https://id.example.org/realms/main"
client_id = "nix-cache"
cache_host = "cache.example.org"
`;

let root = "";
let home = "";
let n = 0;
before(async () => {
  root = await mkdtemp(join(tmpdir(), "nix-cache-login-config-"));
  home = join(root, "home");
  await mkdir(home);
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

async function writeConfig(text: string, name = `case-${++n}.toml`): Promise<string> {
  const path = join(root, name);
  await writeFile(path, text);
  return path;
}

/** The CliError a call throws; fails the test when it does not throw one. */
async function cliError(fn: () => unknown): Promise<CliError> {
  try {
    await fn();
  } catch (e) {
    assert.ok(e instanceof CliError, `expected a CliError, got ${String(e)}`);
    return e;
  }
  assert.fail("expected an error");
}

/** Loads `text` as a config file and asserts the error lists exactly these problems ("key: message"). */
async function assertProblems(text: string, problems: string[], env: Env = { HOME: home }): Promise<void> {
  const file = await writeConfig(text);
  const e = await cliError(() => loadConfig(file, env));
  const lines = problems.map((p) => `${file}: ${p}`);
  assert.equal(e.message, lines.length === 1 ? lines[0] : `invalid configuration:\n  ${lines.join("\n  ")}`);
  assert.equal(e.exitCode, ExitCode.usage);
  assert.equal(e.exitCode, 2);
  assert.equal(e.code, "config_invalid");
  assert.ok(e.hint !== undefined && e.hint.length > 0);
}

async function load(text: string, env: Env = { HOME: home }): Promise<Config> {
  return loadConfig(await writeConfig(text), env);
}

describe("config validation: a table of bad configs", () => {
  const cases: [string, string, string[]][] = [
    [
      "empty file: every required key is missing",
      "",
      ["issuer: missing (required)", "client_id: missing (required)", "cache_host: missing (required)"],
    ],
    [
      "one missing key is a one-line message",
      'issuer = "https://id.example.org/realms/main"\ncache_host = "cache.example.org"\n',
      ["client_id: missing (required)"],
    ],
    [
      "wrong types",
      `issuer = 42
client_id = 1979-05-27
cache_host = [1]
netrc_path = 1.5
client_secret_file = { path = "/run/secret" }
scopes = "openid"
callback_port = "8080"
timeout = 30
`,
      [
        "issuer: must be a string, got a number",
        "client_id: must be a string, got a date",
        "cache_host: must be a string or an array of strings, got an array containing a number",
        "netrc_path: must be a string, got a number",
        "client_secret_file: must be a string, got a table",
        "scopes: must be an array of strings, got a string",
        "callback_port: must be an integer, got a string",
        'timeout: "30" has no unit: write 30s, 30m or 30h (a duration is a whole number with a unit (s, m, h or d), e.g. 30s, 10m, 1h30m)',
      ],
    ],
    [
      "an array with a non-string, a float port, a bool",
      GOOD + 'scopes = ["openid", 7]\ncallback_port = 80.5\nnetrc_path = true\n',
      [
        "netrc_path: must be a string, got a boolean",
        "scopes: must be an array of strings, got an array containing a number",
        "callback_port: must be an integer, got a number",
      ],
    ],
    ["empty strings", GOOD.replace('"nix-cache"', '"  "'), ["client_id: must not be empty"]],
    [
      "unknown keys, with the closest known key suggested",
      `issuer = "https://id.example.org/realms/main"
client-id = "nix-cache"
cache_host = "cache.example.org"
`,
      ["client-id: unknown key (did you mean client_id?)", "client_id: missing (required)"],
    ],
    [
      "a misspelt issuer",
      'isuer = "https://id.example.org/realms/main"\nclient_id = "nix-cache"\ncache_host = "cache.example.org"\n',
      ["isuer: unknown key (did you mean issuer?)", "issuer: missing (required)"],
    ],
    [
      "unknown keys as well as a known one in another case, and one with no close match",
      GOOD + 'Netrc_Path = "/x"\ncolour = "blue"\n',
      ["Netrc_Path: unknown key (did you mean netrc_path?)", "colour: unknown key"],
    ],
    [
      "names every JavaScript object has are unknown keys too",
      GOOD + 'constructor = 1\ntoString = "x"\nhasOwnProperty = []\n',
      ["constructor: unknown key", "toString: unknown key", "hasOwnProperty: unknown key"],
    ],
    [
      "a table is an unknown key",
      GOOD + '[oidc]\nclient_secret_file = "/run/secret"\n',
      ["oidc: unknown key"],
    ],
    [
      "issuer not a URL",
      GOOD.replace("https://id.example.org/realms/main", "id.example.org/realms/main"),
      ['issuer: "id.example.org/realms/main" is not a URL'],
    ],
    [
      "issuer over http on a remote host",
      GOOD.replace("https://", "http://"),
      ["issuer: must use https (only loopback hosts may use http)"],
    ],
    [
      "issuer over http on a host that only starts like a loopback one",
      GOOD.replace("https://id.example.org", "http://127.0.0.1.example.org"),
      ["issuer: must use https (only loopback hosts may use http)"],
    ],
    [
      "issuer with a scheme that is not http(s)",
      GOOD.replace("https://", "ftp://"),
      ["issuer: must be an https URL, got ftp"],
    ],
    [
      "issuer with a query",
      GOOD.replace("/realms/main", "/realms/main?x=1"),
      ["issuer: must not contain a query, fragment or credentials"],
    ],
    [
      "cache_host with a scheme",
      GOOD.replace('"cache.example.org"', '"https://cache.example.org"'),
      ["cache_host: must be a host name without a scheme (e.g. cache.example.org)"],
    ],
    [
      "cache_host with a path",
      GOOD.replace('"cache.example.org"', '"cache.example.org/nix"'),
      ["cache_host: must be a host name without a path (e.g. cache.example.org)"],
    ],
    [
      "cache_host that is no host name",
      GOOD.replace('"cache.example.org"', '"nix@cache example.org"'),
      ['cache_host: "nix@cache example.org" is not a host name'],
    ],
    [
      "cache_url over http on a remote host: the token would cross the network in clear",
      GOOD + 'cache_url = "http://cache.example.org/"\n',
      ["cache_url: must use https (only loopback hosts may use http)"],
    ],
    [
      "timeout beyond setTimeout's range (it would fire at once)",
      GOOD + 'timeout = "25d"\n',
      ["timeout: must be at most 24d"],
    ],
    [
      "default_token_lifetime: not a duration, or zero",
      GOOD + 'default_token_lifetime = "soon"\n',
      [
        'default_token_lifetime: "soon" is not a duration (a duration is a whole number with a unit (s, m, h or d), e.g. 30s, 10m, 1h30m)',
      ],
    ],
    [
      "cache_host with a port out of range",
      GOOD.replace('"cache.example.org"', '"cache.example.org:99999"'),
      ["cache_host: port 99999 is not in 1-65535"],
    ],
    [
      "bad optional values",
      GOOD + 'cache_url = "https://other.example.org/nix"\ncallback_port = 70000\ntimeout = "soon"\n',
      [
        'timeout: "soon" is not a duration (a duration is a whole number with a unit (s, m, h or d), e.g. 30s, 10m, 1h30m)',
        "cache_url: host other.example.org does not match cache_host cache.example.org",
        "callback_port: must be 1-65535",
      ],
    ],
    ["a zero timeout", GOOD + 'timeout = "0s"\n', ["timeout: must be greater than zero"]],
    [
      "durations follow one rule whatever the TOML type: a unit is required",
      GOOD + 'timeout = "30"\ndefault_token_lifetime = true\n',
      [
        'timeout: "30" has no unit: write 30s, 30m or 30h (a duration is a whole number with a unit (s, m, h or d), e.g. 30s, 10m, 1h30m)',
        "default_token_lifetime: true is not a duration (a duration is a whole number with a unit (s, m, h or d), e.g. 30s, 10m, 1h30m)",
      ],
    ],
    [
      "relative paths are refused",
      GOOD + 'netrc_path = "nix/netrc"\nclient_secret_file = "./secret"\n',
      [
        'netrc_path: "nix/netrc" is not an absolute path',
        'client_secret_file: "./secret" is not an absolute path',
      ],
    ],
    [
      "an unset variable is named, never expanded to nothing",
      GOOD + 'netrc_path = "$NETRC_DIR/netrc"\n',
      ["netrc_path: environment variable $NETRC_DIR is not set"],
    ],
    [
      "several unset variables, braced and bare",
      GOOD + 'netrc_path = "${A_DIR}/$B_DIR/netrc"\n',
      ["netrc_path: environment variables $A_DIR, $B_DIR are not set"],
    ],
    [
      "a name that only starts like HOME",
      GOOD + 'netrc_path = "$HOMEDIR/netrc"\n',
      ["netrc_path: environment variable $HOMEDIR is not set"],
    ],
    [
      "every problem is reported at once",
      `isuer = "https://id.example.org/realms/main"
issuer = "http://id.example.org/realms/main"
client_id = 7
cache_host = "https://cache.example.org/"
netrc_path = "$UNSET_FOR_TEST/netrc"
scopes = ["openid", false]
`,
      [
        "isuer: unknown key (did you mean issuer?)",
        "client_id: must be a string, got a number",
        "scopes: must be an array of strings, got an array containing a boolean",
        "issuer: must use https (only loopback hosts may use http)",
        "cache_host: must be a host name without a scheme (e.g. cache.example.org)",
        "netrc_path: environment variable $UNSET_FOR_TEST is not set",
      ],
    ],
  ];
  for (const [title, text, problems] of cases) {
    test(title, () => assertProblems(text, problems));
  }

  test("a variable set to the empty string counts as unset", () =>
    assertProblems(
      GOOD + 'netrc_path = "$NETRC_DIR/netrc"\n',
      ["netrc_path: environment variable $NETRC_DIR is not set"],
      { HOME: home, NETRC_DIR: "" },
    ));

  test("a variable whose value makes the path relative is refused", () =>
    assertProblems(
      GOOD + 'netrc_path = "$NETRC_DIR/netrc"\n',
      ['netrc_path: "$NETRC_DIR/netrc" is not an absolute path'],
      {
        HOME: home,
        NETRC_DIR: "relative/dir",
      },
    ));

  test("the known keys are the documented ones", () => {
    for (const key of ["issuer", "client_id", "cache_host", "netrc_path", "client_secret_file"]) {
      assert.ok(CONFIG_KEYS.includes(key), key);
    }
  });
});

describe("config validation: what is accepted", () => {
  test("a minimal config, with the defaults filled in", async () => {
    const c = await load(GOOD);
    assert.equal(c.issuer, "https://id.example.org/realms/main");
    assert.equal(c.clientId, "nix-cache");
    assert.deepEqual(c.cacheHosts, [
      { host: "cache.example.org", machine: "cache.example.org", url: "https://cache.example.org" },
    ]);
    assert.deepEqual(c.machines, ["cache.example.org"]);
    assert.equal(c.netrcPath, join(home, ".config", "nix", "netrc"));
    assert.equal(c.clientSecretFile, undefined);
    assert.equal(c.mode, "user");
    assert.equal(c.timeoutSeconds, 30);
  });

  test("http is allowed for loopback issuers", async () => {
    for (const issuer of [
      "http://127.0.0.1:8080/realms/test",
      "http://localhost:8080/realms/test",
      "http://LOCALHOST/realms/test",
      "http://[::1]:8080/realms/test",
      "http://127.9.8.7/realms/test",
    ]) {
      const c = await load(GOOD.replace("https://id.example.org/realms/main", issuer));
      assert.equal(c.issuer, issuer);
    }
    assert.equal(isLoopbackHost("127.0.0.1"), true);
    assert.equal(isLoopbackHost("[::1]"), true);
    assert.equal(isLoopbackHost("localhost"), true);
    for (const h of [
      "128.0.0.1",
      "0.0.0.0",
      "::",
      "localhost.example.org",
      "127.0.0.1.example.org",
      "10.0.0.1",
    ]) {
      assert.equal(isLoopbackHost(h), false, h);
    }
  });

  test("the issuer is kept exactly as written (discovery compares it byte for byte)", async () => {
    const c = await load(GOOD.replace("/realms/main", "/realms/main/"));
    assert.equal(c.issuer, "https://id.example.org/realms/main/");
  });

  test("http is only for loopback names that cannot be redirected by a resolver", async () => {
    await assert.rejects(
      load(GOOD.replace("https://id.example.org", "http://id.localhost")),
      /must use https/,
    );
    assert.equal(
      (await load(GOOD.replace("https://id.example.org", "http://localhost:8080"))).issuer.startsWith(
        "http://localhost",
      ),
      true,
    );
  });

  test("cache_host with a port: the netrc machine is the host only", async () => {
    const c = await load(GOOD.replace('"cache.example.org"', '"cache.example.org:8443"'));
    assert.deepEqual(c.cacheHosts, [
      { host: "cache.example.org:8443", machine: "cache.example.org", url: "https://cache.example.org:8443" },
    ]);
    const v6 = await load(GOOD.replace('"cache.example.org"', '"[::1]:8443"'));
    assert.deepEqual(v6.machines, ["::1"]);
    assert.equal(v6.cacheHosts[0]?.url, "https://[::1]:8443");
  });

  test("cache_host as a list: one netrc machine per host name, cache_url per host where given", async () => {
    const c = await load(
      GOOD.replace(
        '"cache.example.org"',
        '["cache.example.org", "cache-eu.example.org:8443", "cache.example.org:9000", "CACHE-EU.example.org"]',
      ).replace(
        "cache_host = [",
        'cache_url = ["https://cache-eu.example.org:8443/nix/", "https://cache.example.org:9000"]\ncache_host = [',
      ),
    );
    assert.deepEqual(c.cacheHosts, [
      { host: "cache.example.org", machine: "cache.example.org", url: "https://cache.example.org" },
      {
        host: "cache-eu.example.org:8443",
        machine: "cache-eu.example.org",
        url: "https://cache-eu.example.org:8443/nix",
      },
      { host: "cache.example.org:9000", machine: "cache.example.org", url: "https://cache.example.org:9000" },
      { host: "CACHE-EU.example.org", machine: "CACHE-EU.example.org", url: "https://CACHE-EU.example.org" },
    ]);
    assert.deepEqual(c.machines, ["cache.example.org", "cache-eu.example.org"]);
  });

  test("cache_host as a list: every bad host is named by its index", async () => {
    await assert.rejects(
      load(
        GOOD.replace(
          '"cache.example.org"',
          '["cache.example.org", "https://b.example.org", "cache.example.org", ""]',
        ) + 'cache_url = ["https://other.example.org"]\n',
      ),
      (e: unknown) => {
        const m = (e as Error).message;
        assert.match(m, /cache_host\[1\]: must be a host name without a scheme/);
        assert.match(m, /cache_host\[2\]: "cache.example.org" is listed twice/);
        assert.match(m, /cache_host\[3\]: must not be empty/);
        return true;
      },
    );
    await assert.rejects(
      load(GOOD.replace('"cache.example.org"', "[]")),
      /cache_host: must not be an empty array/,
    );
    await assert.rejects(
      load(
        GOOD.replace('"cache.example.org"', '["a.example.org", "b.example.org"]') +
          'cache_url = "https://c.example.org"\n',
      ),
      /cache_url: host c.example.org does not match cache_host a.example.org, b.example.org/,
    );
    await assert.rejects(
      load(
        GOOD.replace('"cache.example.org"', '["a.example.org", "b.example.org"]') +
          'cache_url = ["https://a.example.org/x", "https://a.example.org/y"]\n',
      ),
      /cache_url\[1\]: a second URL for cache_host a.example.org/,
    );
    await assert.rejects(
      load(
        GOOD.replace('"cache.example.org"', '["a.example.org", "127.0.0.1"]') +
          'cache_url = ["http://a.example.org", "http://127.0.0.1:8080"]\n',
      ),
      /^[^\n]*cache_url\[0\]: must use https \(only loopback hosts may use http\)$/,
    );
  });

  test("optional keys", async () => {
    const c = await load(
      GOOD +
        `client_secret_file = "/run/secrets/nix-cache"
scopes = ["openid", "offline_access"]
callback_port = 8400
cache_url = "https://cache.example.org/nix/"
timeout = "1m30s"
`,
    );
    assert.equal(c.mode, "service-account");
    assert.equal(c.clientSecretFile, "/run/secrets/nix-cache");
    assert.deepEqual(c.scopes, ["openid", "offline_access"]);
    assert.equal(c.callbackPort, 8400);
    assert.equal(c.cacheHosts[0]?.url, "https://cache.example.org/nix");
    assert.equal(c.timeoutSeconds, 90);
  });
});

describe("config: sizes and file-system errors (issue 12)", () => {
  test("a file over 1 MiB is refused before it is parsed", async () => {
    const path = await writeConfig(GOOD + `# ${"x".repeat(1024 * 1024)}\n`);
    const e = await cliError(() => loadConfig(path, { HOME: home }));
    assert.match(e.message, /: the configuration file is \d+ bytes; at most 1048576 \(1 MiB\) are read$/);
    assert.equal(e.exitCode, ExitCode.usage);
  });

  test("at most 20 problems are listed, then a count of the rest", async () => {
    const text = Array.from({ length: 500 }, (_, i) => `unknown_key_${i} = 1\n`).join("");
    const e = await cliError(() => load(text));
    const lines = e.message.split("\n");
    assert.equal(lines.length, 1 + 20 + 1, e.message);
    assert.match(lines.at(-1) ?? "", /^ {2}\.\.\. and 483 more problems$/);
  });

  test("http cache_url is fine on loopback; the default lifetime of an opaque token is 5m", async () => {
    const c = await load(
      GOOD.replace("cache.example.org", "127.0.0.1") + 'cache_url = "http://127.0.0.1:8080"\n',
    );
    assert.equal(c.cacheHosts[0]?.url, "http://127.0.0.1:8080");
    assert.equal(c.defaultTokenLifetime, 300);
    assert.equal((await load(GOOD + 'default_token_lifetime = "1h"\n')).defaultTokenLifetime, 3600);
  });

  test("a file name over 255 bytes, a file where a directory should be: one line, naming the path", async () => {
    const long = join(root, `${"n".repeat(300)}.toml`);
    const e1 = await cliError(() => loadConfig(long, { HOME: home }));
    assert.equal(
      e1.message,
      `${long}: cannot read configuration (from --config): a name in the path is too long (the limit is 255 bytes)`,
    );
    const file = await writeConfig(GOOD);
    const e2 = await cliError(() => loadConfig(join(file, "config.toml"), { HOME: home }));
    assert.equal(
      e2.message,
      `${join(file, "config.toml")}: cannot read configuration (from --config): a part of the path is not a directory`,
    );
  });
});

describe("config: invalid TOML names the file, line and column", () => {
  const cases: [string, string, number, number, RegExp, RegExp][] = [
    [
      "a key without a value",
      'issuer = "https://x"\nclient_id = \n',
      2,
      13,
      /invalid value/,
      /a value is a string/,
    ],
    [
      "an unterminated string",
      'issuer = "https://x\nclient_id = "a"\n',
      1,
      20,
      /a string is not closed before the end of the line$/,
      /^add the closing quote on line 1 \(each line is KEY = VALUE/,
    ],
    [
      "a key defined twice",
      'issuer = "https://x"\nissuer = "https://y"\n',
      2,
      1,
      /a key is set twice/,
      /keep one/,
    ],
    ["junk after a value", '\n\nclient_id = "a" b\n', 3, 17, /end-of-line/, /each line is KEY = VALUE/],
  ];
  for (const [title, text, line, column, reason, hint] of cases) {
    test(title, async () => {
      const file = await writeConfig(text);
      const e = await cliError(() => loadConfig(file, { HOME: home }));
      assert.equal(e.exitCode, ExitCode.usage);
      assert.ok(
        e.message.startsWith(`${file}: line ${line}, column ${column}: invalid TOML: `),
        `unexpected message: ${e.message}`,
      );
      assert.doesNotMatch(e.message, /\n/);
      assert.ok(e.message.length > `${file}: line ${line}, column ${column}: invalid TOML: `.length);
      assert.match(e.message, reason);
      assert.match(e.hint ?? "", hint);
    });
  }
});

describe("path expansion", () => {
  const env: Env = { HOME: "/home/alice", NETRC_DIR: "/srv/netrc", EMPTY: "" };
  const expand = (raw: string, e: Env = env) => expandPath(raw, e, "config.toml: netrc_path");

  test("$VAR, ${VAR} and ~/", () => {
    assert.equal(expand("$HOME/.netrc"), "/home/alice/.netrc");
    assert.equal(expand("${HOME}/.netrc"), "/home/alice/.netrc");
    assert.equal(expand("${NETRC_DIR}suffix/$NETRC_DIR"), "/srv/netrcsuffix//srv/netrc");
    assert.equal(expand("~/.netrc"), "/home/alice/.netrc");
    assert.equal(expand("~"), "/home/alice");
    assert.equal(expand("/etc/nix/netrc"), "/etc/nix/netrc");
  });

  test("XDG variables fall back to their defaults when unset, empty or relative", () => {
    assert.equal(expand("$XDG_CONFIG_HOME/nix/netrc"), "/home/alice/.config/nix/netrc");
    assert.equal(expand("${XDG_STATE_HOME}/x"), "/home/alice/.local/state/x");
    assert.equal(expand("$XDG_CACHE_HOME/x"), "/home/alice/.cache/x");
    assert.equal(expand("$XDG_DATA_HOME/x"), "/home/alice/.local/share/x");
    assert.equal(
      expand("$XDG_CONFIG_HOME/x", { HOME: "/home/alice", XDG_CONFIG_HOME: "" }),
      "/home/alice/.config/x",
    );
    assert.equal(
      expand("$XDG_CONFIG_HOME/x", { HOME: "/home/alice", XDG_CONFIG_HOME: "rel" }),
      "/home/alice/.config/x",
    );
    assert.equal(
      expand("$XDG_CONFIG_HOME/x", { HOME: "/home/alice", XDG_CONFIG_HOME: "/xdg/c" }),
      "/xdg/c/x",
    );
    assert.equal(xdgDir({ HOME: "/h", XDG_STATE_HOME: "/s" }, "XDG_STATE_HOME"), "/s");
    assert.equal(stateDir({ HOME: "/h" }), "/h/.local/state/nix-cache-login");
    assert.equal(stateDir({ HOME: "/h", XDG_STATE_HOME: "relative" }), "/h/.local/state/nix-cache-login");
  });

  test("any other unset variable is an error naming it, never an empty string", async () => {
    for (const raw of ["$FOO/netrc", "${FOO}/netrc", "/a/$FOO", "$EMPTY/netrc"]) {
      const name = raw.includes("EMPTY") ? "EMPTY" : "FOO";
      const e = await cliError(() => expand(raw));
      assert.equal(e.message, `config.toml: netrc_path: environment variable $${name} is not set`);
      assert.equal(e.exitCode, ExitCode.usage);
      assert.doesNotMatch(e.message, /"\/netrc"/);
    }
  });

  test("HOME is needed for ~ and the XDG defaults", async () => {
    const e = await cliError(() => expand("~/.netrc", {}));
    assert.equal(e.message, "HOME is not set");
    assert.equal(e.exitCode, ExitCode.usage);
    assert.equal(expand("$XDG_CONFIG_HOME/x", { XDG_CONFIG_HOME: "/xdg" }), "/xdg/x");
  });

  test("a relative result is refused", async () => {
    for (const raw of ["netrc", "./netrc", "~user/netrc", "$1/netrc"]) {
      const e = await cliError(() => expand(raw));
      assert.equal(e.message, `config.toml: netrc_path: ${JSON.stringify(raw)} is not an absolute path`);
    }
  });

  test("variables expand in netrc_path and client_secret_file of a loaded config", async () => {
    const env: Env = { HOME: home, XDG_CONFIG_HOME: join(root, "xdg"), SECRETS: "/run/secrets" };
    const c = await load(
      GOOD + 'netrc_path = "$XDG_CONFIG_HOME/nix/netrc"\nclient_secret_file = "${SECRETS}/nix"\n',
      env,
    );
    assert.equal(c.netrcPath, join(root, "xdg", "nix", "netrc"));
    assert.equal(c.mode, "service-account");
    // The secret's path is expanded when the secret is read (${CREDENTIALS_DIRECTORY} exists only
    // inside the systemd unit); it is kept as written for messages.
    assert.equal(c.clientSecretFile, "${SECRETS}/nix");
    assert.equal(c.resolveClientSecretFile(), "/run/secrets/nix");
    const d = await load(GOOD, env);
    assert.equal(d.netrcPath, join(root, "xdg", "nix", "netrc"));
  });
});

test("client_secret_file: a path with variables is checked when the secret is read", async () => {
  const c = await load(GOOD + 'client_secret_file = "${CREDENTIALS_DIRECTORY}/nix-cache"\n');
  assert.equal(c.mode, "service-account");
  const e = await cliError(() => c.resolveClientSecretFile());
  assert.equal(
    e.message,
    `${c.path}: client_secret_file: environment variable $CREDENTIALS_DIRECTORY is not set`,
  );
  assert.equal(e.exitCode, ExitCode.usage);
  const ok = await load(GOOD + 'client_secret_file = "${CREDENTIALS_DIRECTORY}/nix-cache"\n', {
    HOME: home,
    CREDENTIALS_DIRECTORY: "/run/credentials/nix-cache-login.service",
  });
  assert.equal(ok.resolveClientSecretFile(), "/run/credentials/nix-cache-login.service/nix-cache");
  const tilde = await load(GOOD + 'client_secret_file = "~/secret"\n');
  assert.equal(tilde.resolveClientSecretFile(), join(home, "secret"));
});

describe("config search order", () => {
  let xdg = "";
  let env: Env = {};
  let inXdg = "";
  let inEnv = "";
  let inFlag = "";
  before(async () => {
    xdg = join(root, "search-xdg");
    await mkdir(join(xdg, "nix-cache-login"), { recursive: true });
    inXdg = join(xdg, "nix-cache-login", "config.toml");
    await writeFile(inXdg, GOOD.replace("nix-cache", "from-xdg"));
    inEnv = await writeConfig(GOOD.replace("nix-cache", "from-env"), "from-env.toml");
    inFlag = await writeConfig(GOOD.replace("nix-cache", "from-flag"), "from-flag.toml");
    env = { HOME: home, XDG_CONFIG_HOME: xdg, NIX_CACHE_LOGIN_CONFIG: inEnv };
  });

  test("the candidates, in order", () => {
    assert.deepEqual(configCandidates(inFlag, env), [{ path: inFlag, source: "--config", explicit: true }]);
    assert.deepEqual(configCandidates(undefined, env), [
      { path: inEnv, source: "$NIX_CACHE_LOGIN_CONFIG", explicit: true },
    ]);
    assert.deepEqual(
      configCandidates(undefined, { HOME: home, XDG_CONFIG_HOME: xdg, NIX_CACHE_LOGIN_CONFIG: "" }),
      [
        { path: inXdg, source: "$XDG_CONFIG_HOME", explicit: false },
        { path: SYSTEM_CONFIG, source: "system", explicit: false },
      ],
    );
    assert.equal(SYSTEM_CONFIG, "/etc/nix-cache-login/config.toml");
    // XDG_CONFIG_HOME unset: ~/.config.
    assert.equal(
      configCandidates(undefined, { HOME: home })[0]?.path,
      join(home, ".config", "nix-cache-login", "config.toml"),
    );
  });

  test("--config, then $NIX_CACHE_LOGIN_CONFIG, then $XDG_CONFIG_HOME", async () => {
    const a = await loadConfig(inFlag, env);
    assert.deepEqual([a.clientId, a.path, a.source], ["from-flag", inFlag, "--config"]);
    const b = await loadConfig(undefined, env);
    assert.deepEqual([b.clientId, b.path, b.source], ["from-env", inEnv, "$NIX_CACHE_LOGIN_CONFIG"]);
    const c = await loadConfig(undefined, { HOME: home, XDG_CONFIG_HOME: xdg });
    assert.deepEqual([c.clientId, c.path, c.source], ["from-xdg", inXdg, "$XDG_CONFIG_HOME"]);
  });

  test("a file named by --config or the variable must exist: no fallback", async () => {
    const missing = join(root, "missing.toml");
    const e = await cliError(() => loadConfig(missing, env));
    assert.equal(e.message, `${missing}: configuration file not found (from --config)`);
    assert.equal(e.exitCode, ExitCode.usage);
    const f = await cliError(() => loadConfig(undefined, { ...env, NIX_CACHE_LOGIN_CONFIG: missing }));
    assert.equal(f.message, `${missing}: configuration file not found (from $NIX_CACHE_LOGIN_CONFIG)`);
    assert.equal(f.exitCode, ExitCode.usage);
  });

  test("--config may be relative to the working directory, or use ~ and variables", () => {
    assert.equal(configCandidates("conf/c.toml", env)[0]?.path, join(process.cwd(), "conf", "c.toml"));
    assert.equal(configCandidates("~/c.toml", env)[0]?.path, join(home, "c.toml"));
    assert.equal(configCandidates("$XDG_CONFIG_HOME/c.toml", env)[0]?.path, join(xdg, "c.toml"));
    assert.equal(
      configCandidates(undefined, { HOME: home, NIX_CACHE_LOGIN_CONFIG: "c.toml" })[0]?.path,
      join(process.cwd(), "c.toml"),
    );
  });

  test("a directory where the file should be is an error, not a silent skip", async () => {
    const dirXdg = join(root, "dir-xdg");
    await mkdir(join(dirXdg, "nix-cache-login", "config.toml"), { recursive: true });
    const e = await cliError(() => loadConfig(undefined, { HOME: home, XDG_CONFIG_HOME: dirXdg }));
    assert.match(
      e.message,
      /^.*\/dir-xdg\/nix-cache-login\/config\.toml: cannot read configuration \(from \$XDG_CONFIG_HOME\): it is a directory$/,
    );
    assert.equal(e.exitCode, ExitCode.usage);
  });

  test("no configuration anywhere: the error lists every place tried", async () => {
    const emptyXdg = join(root, "empty-xdg");
    await mkdir(emptyXdg);
    const noEnv: Env = { HOME: home, XDG_CONFIG_HOME: emptyXdg };
    const tried = `${join(emptyXdg, "nix-cache-login", "config.toml")} ($XDG_CONFIG_HOME), ${SYSTEM_CONFIG} (system)`;
    const built = noConfigError(configCandidates(undefined, noEnv));
    assert.equal(built.message, `no configuration file found; tried: ${tried}`);
    assert.equal(built.exitCode, ExitCode.usage);
    assert.match(built.hint ?? "", /nix-cache-login init .*--config/);
    if (existsSync(SYSTEM_CONFIG)) {
      // A machine with a system-wide config: that is the last place, and it is used.
      const c = await loadConfig(undefined, noEnv);
      assert.deepEqual([c.path, c.source], [SYSTEM_CONFIG, "system"]);
    } else {
      const e = await cliError(() => loadConfig(undefined, noEnv));
      assert.equal(e.message, built.message);
      assert.equal(e.exitCode, ExitCode.usage);
    }
  });
});

test("validateConfig can be called on a parsed document directly", () => {
  const c = validateConfig(
    { issuer: "https://id.example.org/realms/main", client_id: "c", cache_host: "cache.example.org" },
    "/cfg.toml",
    "--config",
    { HOME: "/home/alice" },
  );
  assert.equal(c.path, "/cfg.toml");
  assert.equal(c.source, "--config");
  assert.equal(c.netrcPath, "/home/alice/.config/nix/netrc");
  assert.throws(
    () => validateConfig({ client_id: 1 }, "/cfg.toml", "--config", { HOME: "/home/alice" }),
    (e: unknown) =>
      e instanceof CliError &&
      e.exitCode === 2 &&
      e.message ===
        "invalid configuration:\n  /cfg.toml: issuer: missing (required)\n  /cfg.toml: client_id: must be a string, got a number\n  /cfg.toml: cache_host: missing (required)",
  );
});
