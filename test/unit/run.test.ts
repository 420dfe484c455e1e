/**
 * run(argv, deps) in this process (test/support/in-process.ts): the command line, the
 * configuration and the error paths that need no browser and make no request, with stdout and
 * stderr captured. Real files in a temp HOME; the same CLI as dist/ but for the bundling, which
 * test/e2e/ tests through the built binary.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { OutputClosed } from "../../src/cli/output.ts";
import { COMMANDS } from "../../src/cli/table.ts";
import { makeWorkspace, snapshot, type Workspace } from "../support/cli.ts";
import { runInProcess } from "../support/in-process.ts";
import { stateFileName } from "../../src/store/state.ts";
import { loadConfig } from "../../src/config/load.ts";
import { parse as parseToml } from "smol-toml";
import { startHostileProvider } from "../support/hostile-provider.ts";

const ISSUER = "https://sso.example.org/realms/nix";
const HOST = "cache.example.org";

const workspaces: Workspace[] = [];
after(async () => {
  for (const ws of workspaces) await ws.cleanup();
});

async function workspace(config?: Record<string, unknown>): Promise<Workspace> {
  const ws = await makeWorkspace(config);
  workspaces.push(ws);
  return ws;
}

const userConfig = { issuer: ISSUER, client_id: "nix-cache", cache_host: HOST };

describe("configuration errors", () => {
  test("no configuration: exit 2 listing every place tried", async () => {
    const ws = await workspace();
    const r = await runInProcess(ws, ["status"]);
    assert.equal(r.code, 2);
    assert.equal(
      r.stderr.split("\n")[0],
      `error: no configuration file found; tried: ${ws.configPath} ($XDG_CONFIG_HOME), /etc/nix-cache-login/config.toml (system)`,
    );
    // The first ten minutes: the hint names the command that writes one.
    assert.equal(
      r.stderr.split("\n")[1],
      "hint: write one with `nix-cache-login init --issuer URL --client-id ID --cache-host HOST`, or pass --config PATH",
    );
  });

  test("every problem at once, one line each, exit 2, nothing written", async () => {
    const ws = await workspace();
    await ws.writeConfig(
      'issuer = "http://sso.example.org/realms/x"\nclient-id = "a"\ncache_host = "https://cache"\n',
    );
    const before = await snapshot(ws.dir);
    const r = await runInProcess(ws, ["refresh"]);
    assert.equal(r.code, 2);
    const lines = r.stderr.split("\n");
    assert.equal(lines[0], "error: invalid configuration:");
    assert.ok(
      lines.includes(`  ${ws.configPath}: client-id: unknown key (did you mean client_id?)`),
      r.stderr,
    );
    assert.ok(lines.includes(`  ${ws.configPath}: client_id: missing (required)`));
    assert.ok(
      lines.includes(`  ${ws.configPath}: issuer: must use https (only loopback hosts may use http)`),
    );
    assert.ok(
      lines.includes(
        `  ${ws.configPath}: cache_host: must be a host name without a scheme (e.g. cache.example.org)`,
      ),
    );
    assert.deepEqual(await snapshot(ws.dir), before);
  });

  test("$NIX_CACHE_LOGIN_CONFIG and --verbose say which file was used", async () => {
    const ws = await workspace();
    const path = join(ws.dir, "elsewhere.toml");
    await writeFile(
      path,
      `issuer = "${ISSUER}"\nclient_id = "nix-cache"\ncache_host = "${HOST}"\nnetrc_path = "$HOME/custom/netrc"\n`,
    );
    const r = await runInProcess(ws, ["status", "--verbose"], { env: { NIX_CACHE_LOGIN_CONFIG: path } });
    assert.equal(r.code, 3);
    assert.match(
      r.stderr,
      new RegExp(`verbose: using configuration ${path} \\(\\$NIX_CACHE_LOGIN_CONFIG\\)`),
    );
    assert.match(r.stdout, new RegExp(`netrc: +${ws.home}/custom/netrc: missing`));
  });
});

describe("a line break from outside forges no line", () => {
  /** Every stderr line is one of the error's own: one `error:`, then items, `hint:` and `see:`. */
  function assertOwnLines(stderr: string): void {
    const lines = stderr.split("\n").slice(0, -1);
    assert.equal(lines.filter((l) => l.startsWith("error:")).length, 1, stderr);
    assert.ok(lines[0]?.startsWith("error: "), stderr);
    for (const l of lines.slice(1)) assert.match(l, /^( {2}\/|hint: |see: )/, stderr);
    assert.ok(!lines.some((l) => l.startsWith("error: forged")), stderr);
  }

  test("in a config key, a --config path and an option name it is shown as \\n", async () => {
    const ws = await workspace(userConfig);
    await ws.writeConfig(
      `issuer = "${ISSUER}"\nclient_id = "nix-cache"\ncache_host = "${HOST}"\n"x\\nerror: forged" = 1\n`,
    );
    const before = await snapshot(ws.dir);
    const key = await runInProcess(ws, ["status"]);
    assert.equal(key.code, 2);
    assertOwnLines(key.stderr);
    assert.ok(key.stderr.includes("x\\nerror: forged: unknown key"), key.stderr);
    assert.deepEqual(await snapshot(ws.dir), before);

    // With a second problem the message is the list: each problem stays one line.
    await ws.writeConfig(`issuer = "${ISSUER}"\ncache_host = "${HOST}"\n"x\\nerror: forged" = 1\n`);
    const list = await runInProcess(ws, ["status"]);
    assert.equal(list.code, 2);
    assert.equal(list.stderr.split("\n")[0], "error: invalid configuration:");
    assertOwnLines(list.stderr);
    assert.ok(list.stderr.includes("x\\nerror: forged: unknown key"), list.stderr);
    await ws.writeConfig(userConfig);
    const after = await snapshot(ws.dir);

    const path = await runInProcess(ws, ["status", "--config", join(ws.dir, "no\nerror: forged.toml")]);
    assert.equal(path.code, 2);
    assertOwnLines(path.stderr);
    assert.ok(path.stderr.includes("no\\nerror: forged.toml"), path.stderr);

    const option = await runInProcess(ws, ["status", "--x\nerror: forged"]);
    assert.equal(option.code, 2);
    assertOwnLines(option.stderr);
    assert.ok(option.stderr.includes("--x\\nerror: forged"), option.stderr);

    const json = await runInProcess(ws, ["status", "--json", "--x\nerror: forged"]);
    assert.equal(json.stdout.split("\n").length, 2, "one line");
    assert.deepEqual(await snapshot(ws.dir), after);
  });
});

describe("configuration values reach the terminal without control characters", () => {
  test("status and logout: an ESC or a line break in issuer, client_id or netrc_path is not printed raw", async () => {
    const ws = await workspace();
    // TOML writes the ESC as \\u001b: the file itself is plain text.
    await ws.writeConfig(
      [
        `issuer = "${ISSUER}/\\u001b]0;pwned\\u0007"`,
        'client_id = "nix\\u001b[2J\\ncache"',
        `cache_host = "${HOST}"`,
        `netrc_path = "${join(ws.dir, "net\\u001b[31mrc")}"`,
        "",
      ].join("\n"),
    );
    for (const argv of [["status"], ["logout"], ["logout", "--verbose"]]) {
      const r = await runInProcess(ws, argv);
      assert.ok(r.code === 3 || r.code === 0, `${argv.join(" ")}: ${r.code} ${r.stderr}`);
      for (const [name, text] of [
        ["stdout", r.stdout],
        ["stderr", r.stderr],
      ] as const) {
        assert.doesNotMatch(
          text,
          // eslint-disable-next-line no-control-regex
          /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/,
          `${argv.join(" ")} ${name}: ${text}`,
        );
        assert.ok(!text.split("\n").includes("cache (user sign-in)"), `${name}: ${text}`);
      }
      if (argv[0] === "status") {
        assert.match(r.stdout, /^issuer: +https:\/\/sso\.example\.org\/realms\/nix\/ \]0;pwned $/m, r.stdout);
        assert.match(r.stdout, /^client: +nix \[2J\\ncache \(user sign-in\)$/m, r.stdout);
        assert.match(r.stdout, /^netrc: +.*net \[31mrc: missing$/m, r.stdout);
      } else {
        assert.match(
          r.stderr,
          /^Not signed in to https:\/\/sso\.example\.org\/realms\/nix\/ \]0;pwned ; nothing to remove\.$/m,
        );
      }
    }
  });
});

describe("a token state of the wrong types", () => {
  test("status: state_corrupt with its hint, not an internal error", async () => {
    const ws = await workspace(userConfig);
    await mkdir(ws.stateDir, { recursive: true, mode: 0o700 });
    const file = join(ws.stateDir, stateFileName(ISSUER, "nix-cache"));
    const base = { version: 1, issuer: ISSUER, client_id: "nix-cache", mode: "user" };
    for (const wrong of [
      { access_token: "a", access_token_expires_at: 1893456000 },
      { access_token: "a", refresh_token: "r", refresh_token_expires_at: ["x"] },
      { session_ended: 5 },
    ]) {
      await writeFile(file, JSON.stringify({ ...base, ...wrong }), { mode: 0o600 });
      const before = await snapshot(ws.dir);
      const r = await runInProcess(ws, ["status", "--json"]);
      const error = (JSON.parse(r.stdout) as { error?: { code: string; hint: string } }).error;
      assert.ok(error !== undefined, `${JSON.stringify(wrong)}: no error: ${r.stdout} ${r.stderr}`);
      assert.equal(error.code, "state_corrupt", r.stdout);
      assert.equal(r.code, 1);
      assert.match(error.hint, /nix-cache-login login/);
      assert.deepEqual(await snapshot(ws.dir), before);
    }
  });
});

describe("--json output has no raw control characters either", () => {
  test("status --json, doctor --json and an error under --json escape DEL, C1 and U+2028", async () => {
    const ws = await workspace();
    const clientId = "nix\u009b2J\u007f\u2028cache";
    await ws.writeConfig(
      `issuer = "http://127.0.0.1:9/realms/nix"\nclient_id = "nix\\u009b2J\\u007f\\u2028cache"\ncache_host = "127.0.0.1:9"\ntoken_storage = "file"\n`,
    );
    const status = await runInProcess(ws, ["status", "--json"]);
    assert.equal((JSON.parse(status.stdout) as { client_id: string }).client_id, clientId);
    const doctor = await runInProcess(ws, ["doctor", "--json"]);
    assert.ok(JSON.stringify(JSON.parse(doctor.stdout)).includes(clientId), doctor.stdout);
    const error = await runInProcess(ws, ["refresh", "--json"]);
    assert.equal(error.code, 3);
    assert.match((JSON.parse(error.stdout) as { error: { message: string } }).error.message, /client nix/);
    for (const out of [status.stdout, doctor.stdout, error.stdout]) {
      assert.doesNotMatch(out, /[\u007f-\u009f\u2028\u2029]/, out);
    }
  });
});

describe("doctor's lines are its own", () => {
  test("a line break in client_id is shown as \\n in doctor's details, not as a line", async () => {
    const ws = await workspace();
    await ws.writeConfig(
      'issuer = "http://127.0.0.1:9/realms/nix"\nclient_id = "nix\\nfail   forged"\ncache_host = "127.0.0.1:9"\ntoken_storage = "file"\n',
    );
    const r = await runInProcess(ws, ["doctor"]);
    assert.ok(!r.stdout.split("\n").some((l) => l.startsWith("fail")), r.stdout);
    assert.ok(r.stdout.includes("user sign-in with client nix\\nfail   forged at "), r.stdout);
  });
});

describe("errors under --json", () => {
  test("one line {error: {code, message, hint, exit_code}} on stdout with the exit code", async () => {
    const ws = await workspace(userConfig);
    const res = await runInProcess(ws, ["refresh", "--json"]);
    assert.equal(res.code, 3);
    assert.equal(res.stdout.split("\n").length, 2, "one line");
    const err = (JSON.parse(res.stdout) as { error: Record<string, unknown> }).error;
    assert.equal(err.code, "not_signed_in");
    assert.equal(err.exit_code, 3);
    assert.match(String(err.message), /not signed in/);
    assert.match(String(err.hint), /nix-cache-login login/);

    const status = await runInProcess(ws, ["status", "--json", "--config", join(ws.dir, "missing.toml")]);
    assert.equal(status.code, 2);
    const s = (JSON.parse(status.stdout) as { error: Record<string, unknown> }).error;
    assert.equal(s.code, "config_not_found");
    assert.match(String(s.message), /missing\.toml: configuration file not found/);

    const bad = await runInProcess(ws, ["logout", "--json", "--bogus"]);
    assert.equal(bad.code, 2);
    assert.equal((JSON.parse(bad.stdout) as { error: Record<string, unknown> }).error.code, "unknown_option");
  });

  test("--min-valid without a unit is a usage error that names the units, and writes nothing", async () => {
    const ws = await workspace(userConfig);
    const before = await snapshot(ws.home);
    for (const command of ["refresh", "service-account"]) {
      const res = await runInProcess(ws, [command, "--min-valid", "10"]);
      assert.equal(res.code, 2, res.stderr);
      assert.match(
        res.stderr,
        /^error: --min-valid: "10" has no unit: write 10s, 10m or 10h \(a duration is a whole number with a unit \(s, m, h or d\), e\.g\. 30s, 10m, 1h30m\)\n$/,
      );
    }
    assert.deepEqual(await snapshot(ws.home), before);
  });
});

describe("the command line", () => {
  test("--help lists every command of the table, the config search order and exit codes; --version prints the version", async () => {
    const ws = await workspace();
    const h = await runInProcess(ws, ["--help"]);
    assert.equal(h.code, 0);
    for (const word of [
      ...COMMANDS.map((c) => `  ${c.name} `),
      "$NIX_CACHE_LOGIN_CONFIG",
      "/etc/nix-cache-login/config.toml",
      "130  interrupted",
    ]) {
      assert.ok(h.stdout.includes(word), word);
    }
    const v = await runInProcess(ws, ["--version"]);
    assert.equal(v.code, 0);
    // Not built: the table's version of a source tree.
    assert.equal(v.stdout, "0.0.0-dev\n");
    const bad = await runInProcess(ws, ["frobnicate"]);
    assert.equal(bad.code, 2);
    assert.equal(bad.stderr, 'error: unknown command "frobnicate"\nhint: see `nix-cache-login --help`\n');
    assert.equal(bad.stdout, "");
  });

  test("every command of the table has its --help (and `help NAME`), exit 0, nothing on stderr", async () => {
    const ws = await workspace();
    for (const c of COMMANDS) {
      for (const argv of [
        [c.name, "--help"],
        ["help", c.name],
      ]) {
        const r = await runInProcess(ws, argv);
        assert.equal(r.code, 0, argv.join(" "));
        assert.match(r.stdout, new RegExp(`^Usage: nix-cache-login ${c.name}\\b`), argv.join(" "));
        for (const o of c.options) assert.ok(r.stdout.includes(`--${o.name}`), `${c.name}: --${o.name}`);
        assert.equal(r.stderr, "");
      }
    }
  });

  test("every command of the table refuses an option it does not know, exit 2, with its own help in the hint", async () => {
    const ws = await workspace(userConfig);
    for (const c of COMMANDS) {
      const r = await runInProcess(ws, [c.name, "--no-such-option"]);
      assert.equal(r.code, 2, c.name);
      assert.equal(
        r.stderr,
        `error: unknown option --no-such-option\nhint: see \`nix-cache-login ${c.name} --help\`\n`,
        c.name,
      );
    }
  });

  test("a reader that goes away (`| head -0`) ends the command with exit 0 and nothing on stderr", async () => {
    const ws = await workspace(userConfig);
    let writes = 0;
    const r = await runInProcess(ws, ["status"], {
      stdoutWrite: () => {
        writes++;
        throw new OutputClosed(1);
      },
    });
    assert.deepEqual([r.code, r.stderr, writes], [0, "", 1]);
  });
});

describe("init writes what loads back", () => {
  test("client_id, netrc_path and client_secret_file with DEL, quotes, backslashes and tabs load back unchanged", async () => {
    const op = await startHostileProvider();
    try {
      const ws = await workspace();
      const target = join(ws.dir, "init.toml");
      const clientId = 'a\x7fb"c\\d\te\u00e9';
      const netrcPath = join(ws.dir, "net\x7frc");
      for (const secret of [undefined, join(ws.dir, 's\x7f"\\ecret')]) {
        const r = await runInProcess(ws, [
          "--config",
          target,
          "init",
          "--force",
          "--issuer",
          op.issuer,
          "--client-id",
          clientId,
          "--cache-host",
          `${HOST},other.example.org`,
          "--netrc-path",
          netrcPath,
          ...(secret === undefined ? [] : ["--client-secret-file", secret]),
        ]);
        assert.equal(r.code, 0, r.stderr);
        const text = await readFile(target, "utf8");
        assert.ok(!text.includes("\x7f"), "DEL is written escaped");
        const doc = { ...parseToml(text) };
        assert.deepEqual(doc, {
          issuer: op.issuer,
          client_id: clientId,
          cache_host: [HOST, "other.example.org"],
          netrc_path: netrcPath,
          ...(secret === undefined ? {} : { client_secret_file: secret }),
        });
        const c = loadConfig(target, ws.env);
        assert.equal(c.clientId, clientId);
        assert.equal(c.netrcPath, netrcPath);
        assert.equal(c.clientSecretFile, secret);
      }
    } finally {
      await op.stop();
    }
  });
});

describe("a broken netrc is found before the sign-in", () => {
  test("login: netrc_syntax before any request, nothing written", async () => {
    const ws = await workspace({
      issuer: "http://127.0.0.1:9/realms/nix",
      client_id: "nix-cache",
      cache_host: HOST,
      token_storage: "file",
    });
    await mkdir(join(ws.home, ".config", "nix"), { recursive: true, mode: 0o700 });
    await writeFile(ws.netrcPath, 'machine other.example login x password "open\n', { mode: 0o600 });
    const before = await snapshot(ws.dir);
    const r = await runInProcess(ws, ["login", "--device", "--json"]);
    assert.equal(r.code, 1, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { error: { code: string } }).error.code, "netrc_syntax", r.stdout);
    assert.deepEqual(await snapshot(ws.dir), before);
  });
});

describe("timer and init refuse bad values before writing anything", () => {
  const unitDir = (ws: Workspace) => join(ws.env.XDG_CONFIG_HOME as string, "systemd", "user");

  test("timer: bad durations, an interval without a calendar form, and a foreign unit are refused", async () => {
    const ws = await workspace(userConfig);
    const cases: [string[], RegExp][] = [
      [["--interval", "7m"], /--interval: 7m does not divide a minute, an hour or a day evenly/],
      [["--interval", "2"], /--interval: "2" has no unit: write 2s, 2m or 2h/],
      [["--interval", "2x"], /--interval: "2x" is not a duration \(a duration is a whole number/],
      [["--min-valid", "2m"], /--min-valid 2m is not longer than --interval 2m plus the random delay/],
    ];
    for (const [args, message] of cases) {
      const res = await runInProcess(ws, ["timer", "install", ...args]);
      assert.equal(res.code, 2, res.stderr);
      assert.match(res.stderr, message);
    }
    assert.ok(!existsSync(unitDir(ws)), "nothing written");
    const unknown = await runInProcess(ws, ["timer", "instal"]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /did you mean install\?/);

    await mkdir(unitDir(ws), { recursive: true });
    await writeFile(join(unitDir(ws), "nix-cache-login.service"), "[Service]\nExecStart=/bin/true\n");
    const foreign = await runInProcess(ws, ["timer", "install"]);
    assert.equal(foreign.code, 1);
    assert.match(
      foreign.stderr,
      /nix-cache-login\.service exists and was not written by nix-cache-login timer install/,
    );
    assert.equal(
      await readFile(join(unitDir(ws), "nix-cache-login.service"), "utf8"),
      "[Service]\nExecStart=/bin/true\n",
    );
    assert.ok(!existsSync(join(unitDir(ws), "nix-cache-login.timer")));
    const remove = await runInProcess(ws, ["timer", "remove"]);
    assert.equal(remove.code, 1);
    assert.ok(existsSync(join(unitDir(ws), "nix-cache-login.service")), "remove leaves a foreign file alone");
  });

  test("init: a plain-http issuer and missing flags are usage errors, and no configuration is written", async () => {
    const ws = await workspace();
    const plainHttp = await runInProcess(ws, [
      "init",
      "--issuer",
      "http://sso.example.org/realms/x",
      "--client-id",
      "c",
      "--cache-host",
      HOST,
    ]);
    assert.equal(plainHttp.code, 2, plainHttp.stderr);
    assert.match(plainHttp.stderr, /issuer/);
    const missing = await runInProcess(ws, ["init", "--issuer", ISSUER]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /init needs --client-id, --cache-host/);
    assert.ok(!existsSync(ws.configPath), "nothing written");
  });
});
