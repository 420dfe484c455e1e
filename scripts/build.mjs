// The build: one bundle of our code, and each third-party library the network commands use in a
// file of its own, loaded only when a command first import()s it.
//
// dist/nix-cache-login.cjs   all of our code and smol-toml (every command reads the config).
//                            CommonJS, because Node starts a CJS entry faster than an ESM one. An
//                            import() of one of our modules stays lazy: esbuild runs that module's
//                            top-level code at the first import(), so `status` never sets up the
//                            login or the renewal code.
// dist/vendor/NAME.cjs       openid-client, undici, open and uqr, each required at its first
//                            import(): `status`, `--help` and `refresh --min-valid` never parse
//                            them (test/e2e/startup.test.ts checks what each command loads).
// dist/man/, completions/    made from the command table (src/cli/table.ts).
import { chmod, mkdir, readFile, rm, writeFile } from "node:fs/promises";

// `npm pack` on a fresh clone runs this (prepack) before anything was installed.
const { build } = await import("esbuild").catch(() => {
  console.error("build: esbuild is not installed; run `npm ci` first");
  process.exit(1);
});

const root = new URL("..", import.meta.url).pathname;
const dist = `${root}dist/`;
const pkg = JSON.parse(await readFile(`${root}package.json`, "utf8"));
await rm(dist, { recursive: true, force: true });

/** Loaded lazily, each from dist/vendor/NAME.cjs. */
const VENDOR = ["openid-client", "undici", "open", "uqr"];

const common = {
  bundle: true,
  platform: "node",
  target: "node20.19",
  format: "cjs",
  minify: true,
  legalComments: "linked",
  logLevel: "warning",
  // import() becomes a require() in a promise: no ESM loader at start-up.
  supported: { "dynamic-import": false },
};

const entry = await build({
  ...common,
  entryPoints: [`${root}src/main.ts`],
  outfile: `${dist}nix-cache-login.cjs`,
  define: { __VERSION__: JSON.stringify(pkg.version) },
  banner: { js: `#!/usr/bin/env node\n"use strict";\n${nodeVersionCheck(nodeMinimum(pkg.engines.node))}` },
  metafile: true,
  plugins: [
    {
      name: "vendor",
      setup(b) {
        const filter = new RegExp(`^(${VENDOR.map((n) => n.replace(/[-/]/g, "\\$&")).join("|")})$`);
        b.onResolve({ filter }, (args) => ({ path: `./vendor/${args.path}.cjs`, external: true }));
      },
    },
  ],
});
await chmod(`${dist}nix-cache-login.cjs`, 0o755);
const stray = Object.keys(entry.metafile.inputs).filter(
  (p) => p.includes("node_modules/") && !p.includes("node_modules/smol-toml/"),
);
if (stray.length > 0) fail(`third-party code in the bundle, not in dist/vendor/: ${stray.join(", ")}`);

await build({
  ...common,
  entryPoints: Object.fromEntries(VENDOR.map((name) => [name, name])),
  outdir: `${dist}vendor`,
  outExtension: { ".js": ".cjs" },
  // open (ESM only) finds its bundled xdg-open next to itself; there is none in dist/, so it uses
  // the system's.
  define: { "import.meta.url": "__ncl_url" },
  banner: { js: `"use strict";\nconst __ncl_url = require("node:url").pathToFileURL(__filename).href;` },
});

// Completions and the man page, from the command table: its modules built as one ESM file next to
// node_modules (so that their imports resolve), imported, and removed.
const docs = await build({
  ...common,
  minify: false,
  stdin: {
    contents: [
      'export { commandTable } from "./src/cli/table.ts";',
      'export { helpFooter } from "./src/cli/help.ts";',
      'export { completionScript } from "./src/cli/completion.ts";',
      'export { manPage } from "./src/cli/manpage.ts";',
    ].join("\n"),
    resolveDir: root,
    loader: "ts",
  },
  format: "esm",
  supported: {},
  write: false,
  define: { __VERSION__: JSON.stringify(pkg.version) },
  legalComments: "none",
  packages: "external",
});
const docsFile = `${root}.build-docs.mjs`;
await writeFile(docsFile, docs.outputFiles[0].text);
const gen = await import(docsFile).finally(() => rm(docsFile, { force: true }));
const table = gen.commandTable();
const epoch = Number(process.env.SOURCE_DATE_EPOCH ?? NaN);
const date = (Number.isFinite(epoch) ? new Date(epoch * 1000) : new Date()).toISOString().slice(0, 10);
await mkdir(`${dist}man`, { recursive: true });
await writeFile(`${dist}man/${pkg.name}.1`, gen.manPage(table, gen.helpFooter(), date));
await mkdir(`${dist}completions`, { recursive: true });
await writeFile(`${dist}completions/${pkg.name}.bash`, gen.completionScript("bash", table));
await writeFile(`${dist}completions/_${pkg.name}`, gen.completionScript("zsh", table));
await writeFile(`${dist}completions/${pkg.name}.fish`, gen.completionScript("fish", table));

/** ">=20.19" -> "20.19": the start-up check compares major and minor. */
function nodeMinimum(range) {
  const m = /^>=\s*(\d+)\.(\d+)(?:\.\d+)?$/.exec(range ?? "");
  if (m === null) fail(`package.json engines.node must be ">=MAJOR.MINOR", not ${JSON.stringify(range)}`);
  return `${m[1]}.${m[2]}`;
}

/**
 * First of all in the bundle: it uses what older Node.js versions lack (such as
 * process.getBuiltinModule) and would fail with a confusing message. In syntax that old versions
 * parse (no ?. or ??), so that they get this message.
 */
function nodeVersionCheck(needed) {
  return `{
  var want = ${JSON.stringify(needed)}.split(".").map(Number);
  var have = process.versions.node.split(".").map(Number);
  if (have[0] < want[0] || (have[0] === want[0] && have[1] < want[1])) {
    process.stderr.write(
      "nix-cache-login: needs Node.js ${needed} or later, found " + process.version + " (" + process.execPath +
        '); install a current Node.js (https://nodejs.org/en/download, or see docs/install.md), or use the Nix package\\n',
    );
    process.exit(1);
  }
}`;
}

function fail(message) {
  console.error(`build: ${message}`);
  process.exit(1);
}
