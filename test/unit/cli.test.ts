// The command line: parseArgs' rules under our table of commands and options. Every bad command
// line is a one-line CliError with exit code 2 and a hint naming the help to read.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { helpText } from "../../src/cli/help.ts";
import { parseCommandLine } from "../../src/cli/parse.ts";
import { renderError } from "../../src/cli/render.ts";
import { COMMANDS } from "../../src/cli/table.ts";
import { CliError, ExitCode } from "../../src/errors.ts";

function usageError(argv: string[]): CliError {
  try {
    parseCommandLine(argv);
  } catch (e) {
    assert.ok(e instanceof CliError, `${argv.join(" ")}: ${String(e)}`);
    assert.equal(e.exitCode, ExitCode.usage, argv.join(" "));
    assert.ok(!e.message.includes("\n"), `one line: ${e.message}`);
    return e;
  }
  assert.fail(`${argv.join(" ")} was accepted`);
}

describe("parsing", () => {
  test("no command is login; options may come before or after the command", () => {
    assert.deepEqual(parseCommandLine([]), { kind: "run", command: "login", values: {} });
    assert.deepEqual(parseCommandLine(["--device"]), {
      kind: "run",
      command: "login",
      values: { device: true },
    });
    for (const argv of [
      ["-c", "/x.toml", "status", "--json"],
      ["status", "--config=/x.toml", "--json"],
      ["--json", "status", "--config", "/x.toml"],
    ]) {
      assert.deepEqual(
        parseCommandLine(argv),
        { kind: "run", command: "status", values: { config: "/x.toml", json: true } },
        argv.join(" "),
      );
    }
    assert.deepEqual(parseCommandLine(["refresh", "--min-valid", "10m", "-v"]), {
      kind: "run",
      command: "refresh",
      values: { "min-valid": "10m", verbose: true },
    });
    // parseArgs' forms: a value glued to a short option, flag groups, "=" for a value starting
    // with "-", and "--" before words that only look like options.
    assert.deepEqual(parseCommandLine(["-c/x.toml", "-vq", "refresh", "--min-valid=-1m"]), {
      kind: "run",
      command: "refresh",
      values: { config: "/x.toml", verbose: true, quiet: true, "min-valid": "-1m" },
    });
    assert.deepEqual(parseCommandLine(["-vc", "/x.toml", "status"]), {
      kind: "run",
      command: "status",
      values: { config: "/x.toml", verbose: true },
    });
    assert.deepEqual(parseCommandLine(["--config=", "status"]), {
      kind: "run",
      command: "status",
      values: { config: "" },
    });
    assert.deepEqual(parseCommandLine(["timer", "--", "install"]), {
      kind: "run",
      command: "timer",
      values: { "": "install" },
    });
    // A value that names a command is still a value.
    assert.deepEqual(parseCommandLine(["--browser-command", "status"]), {
      kind: "run",
      command: "login",
      values: { "browser-command": "status" },
    });
  });

  test("help and version", () => {
    assert.deepEqual(parseCommandLine(["--help"]), { kind: "help", command: undefined });
    assert.deepEqual(parseCommandLine(["-h"]), { kind: "help", command: undefined });
    assert.deepEqual(parseCommandLine(["status", "--help"]), { kind: "help", command: "status" });
    assert.deepEqual(parseCommandLine(["help", "doctor"]), { kind: "help", command: "doctor" });
    assert.deepEqual(parseCommandLine(["help"]), { kind: "help", command: undefined });
    assert.deepEqual(parseCommandLine(["-V"]), { kind: "version" });
    assert.deepEqual(parseCommandLine(["logout", "--version"]), { kind: "version" });
  });

  test("mistakes: one line each, exit 2, with a suggestion where one is close", () => {
    const cases: [string[], string, string][] = [
      [["frobnicate"], 'unknown command "frobnicate"', "see `nix-cache-login --help`"],
      [["stauts"], 'unknown command "stauts" (did you mean status?)', "see `nix-cache-login --help`"],
      [["help", "stat"], 'unknown command "stat" (did you mean status?)', "see `nix-cache-login --help`"],
      [
        ["status", "--jsn"],
        "unknown option --jsn (did you mean --json?)",
        "see `nix-cache-login status --help`",
      ],
      [
        ["refresh", "--min-vaild", "5m"],
        "unknown option --min-vaild (did you mean --min-valid?)",
        "see `nix-cache-login refresh --help`",
      ],
      [["status", "-x"], "unknown option -x", "see `nix-cache-login status --help`"],
      [["status", "--device"], "status has no option --device", "see `nix-cache-login status --help`"],
      [["logout", "--device"], "logout has no option --device", "see `nix-cache-login logout --help`"],
      [["status", "extra"], 'unexpected argument "extra"', "see `nix-cache-login status --help`"],
      [
        ["--device", "--port", "8000"],
        "--device cannot be used with --port",
        "see `nix-cache-login login --help`",
      ],
      [
        ["login", "--browser-command", "firefox", "--device"],
        "--device cannot be used with --browser-command",
        "see `nix-cache-login login --help`",
      ],
      [
        ["status", "--config"],
        'option --config needs a value (write --config=VALUE for one that starts with "-")',
        "see `nix-cache-login status --help`",
      ],
      [
        ["-c", "--verbose", "status"],
        'option --config needs a value (write --config=VALUE for one that starts with "-")',
        "see `nix-cache-login status --help`",
      ],
      [["status", "--json=yes"], "option --json takes no value", "see `nix-cache-login status --help`"],
      [["status", "-vx"], "unknown option -x", "see `nix-cache-login status --help`"],
      [["--", "--help"], 'unknown command "--help"', "see `nix-cache-login --help`"],
      [
        ["refresh", "--min-valid", "-1m"],
        'option --min-valid needs a value (write --min-valid=VALUE for one that starts with "-")',
        "see `nix-cache-login refresh --help`",
      ],
    ];
    for (const [argv, message, hint] of cases) {
      const e = usageError(argv);
      assert.equal(e.message, message, argv.join(" "));
      assert.equal(e.hint, hint, argv.join(" "));
    }
  });

  test("each kind of mistake has its own stable code", () => {
    const cases: [string[], string][] = [
      [["frobnicate"], "unknown_command"],
      [["help", "stat"], "unknown_command"],
      [["status", "--jsn"], "unknown_option"],
      [["status", "--device"], "unknown_option"],
      [["status", "extra"], "bad_argument"],
      [["--device", "--port", "8000"], "conflicting_options"],
      [["status", "--config"], "bad_option_value"],
      [["status", "--json=yes"], "bad_option_value"],
    ];
    for (const [argv, code] of cases) assert.equal(usageError(argv).code, code, argv.join(" "));
  });
});

describe("rendering errors", () => {
  const sink = (aborted = false) => {
    const out = { stdout: "", stderr: "" };
    const controller = new AbortController();
    if (aborted) controller.abort();
    return {
      out,
      to: {
        stdout: { write: (t: string) => (out.stdout += t) },
        stderr: { write: (t: string) => (out.stderr += t) },
        signal: controller.signal,
      },
    };
  };

  test("a CliError: message and hint on stderr, its exit code; with --json its code on stdout", () => {
    const e = new CliError("config_not_found", "no configuration file found", {
      exitCode: ExitCode.usage,
      hint: "pass --config PATH",
    });
    const text = sink();
    assert.equal(renderError(e, text.to, { verbose: false, json: false }), 2);
    assert.deepEqual(text.out, {
      stdout: "",
      stderr: "error: no configuration file found\nhint: pass --config PATH\nsee: docs/configuration.md\n",
    });
    const json = sink();
    assert.equal(renderError(e, json.to, { verbose: false, json: true }), 2);
    assert.equal(json.out.stderr, text.out.stderr);
    // One line, the same form as every other --json result.
    assert.equal(
      json.out.stdout,
      '{"error":{"code":"config_not_found","message":"no configuration file found","hint":"pass --config PATH","exit_code":2}}\n',
    );
  });

  test("a CliError's code is its first argument, whatever its exit code; anything else is internal", () => {
    const e = new CliError("config_syntax", "x", { exitCode: ExitCode.usage });
    assert.deepEqual([e.code, e.exitCode, e.message], ["config_syntax", ExitCode.usage, "x"]);
    assert.equal(new CliError("lock_timeout", "x").exitCode, ExitCode.failure);
    const json = sink();
    assert.equal(renderError(new TypeError("boom"), json.to, { verbose: false, json: true }), 1);
    assert.equal((JSON.parse(json.out.stdout) as { error: { code: string } }).error.code, "internal");
    assert.equal(json.out.stderr, "error: boom\nhint: run again with --verbose for details\n");
  });

  test("after Ctrl-C every error is `interrupted`, exit 130", () => {
    const s = sink(true);
    assert.equal(renderError(new CliError("lock_timeout", "x"), s.to, { verbose: true, json: true }), 130);
    assert.equal(s.out.stderr, "error: interrupted\n");
    assert.equal((JSON.parse(s.out.stdout) as { error: { code: string } }).error.code, "interrupted");
  });
});

describe("help", () => {
  test("the overview lists every command, the global options, the config search order and exit codes", () => {
    const text = helpText();
    for (const word of [
      "Usage: nix-cache-login [COMMAND] [OPTIONS]",
      ...COMMANDS.map((c) => `  ${c.name} `),
      "-c, --config <path>",
      "-V, --version",
      "$NIX_CACHE_LOGIN_CONFIG",
      "/etc/nix-cache-login/config.toml",
      "Keys: issuer, client_id, cache_host",
      "130  interrupted",
      "More: docs/commands.md",
    ]) {
      assert.ok(text.includes(word), word);
    }
  });

  test("a command's help lists its own options, then the global ones", () => {
    const text = helpText("login");
    assert.match(text, /^Usage: nix-cache-login login \[OPTIONS\]\n\nSign in with a browser/);
    const order = [
      "--device",
      "--no-browser",
      "--browser-command <cmd>",
      "--port <port>",
      "--timeout",
      "--config",
    ];
    const at = order.map((o) => text.indexOf(o));
    assert.ok(
      at.every((x, i) => x > 0 && (i === 0 || x > (at[i - 1] as number))),
      `in order: ${at.join(", ")}`,
    );
    assert.ok(!helpText("status").includes("--device"));
    assert.ok(helpText("logout").startsWith("Usage: nix-cache-login logout [OPTIONS]\n"));
    assert.ok(helpText("timer").startsWith("Usage: nix-cache-login timer install|remove|status [OPTIONS]\n"));
  });

  test("lines stay within 100 columns; long descriptions wrap under their column", () => {
    for (const command of [undefined, ...COMMANDS.map((c) => c.name)]) {
      for (const line of helpText(command).split("\n")) {
        assert.ok(line.length <= 100, `${command ?? "overview"}: ${line}`);
      }
    }
    const lines = helpText("login").split("\n");
    const i = lines.findIndex((l) => l.includes("--browser-command <cmd>"));
    const column = (lines[i] as string).indexOf("open the URL");
    assert.equal(/^ */.exec(lines[i + 1] as string)?.[0].length, column, "continuation is aligned");
  });
});
