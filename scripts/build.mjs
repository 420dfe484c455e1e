// Bundle the CLI: timers start it often, and module resolution over many small files costs more
// than parsing one. The bundles are CommonJS (the source is ESM): Node starts a CJS entry
// measurably faster than an ESM one (see `npm run bench`).
//
// dist/nix-cache-login.cjs   all of our own code, once (src/main.ts). Modules reached only through
//                            import() are initialised when first imported, so `status` runs none
//                            of the network code.
// dist/vendor/NAME.cjs       each third-party library the network commands use (openid-client,
//                            undici, open, uqr), in a file of its own, required
//                            when first imported: `status`, `--help` and a timer's
//                            `refresh --min-valid` never parse them. smol-toml, which every command
//                            needs, is in the entry.
import { chmod, mkdir, readFile, rm, writeFile } from "node:fs/promises";

// `npm pack` on a fresh clone runs this (prepack) before anything was installed.
const { build } = await import("esbuild").catch(() => {
  console.error("build: esbuild is not installed; run `npm ci` first");
  process.exit(1);
});

const pkg = JSON.parse(await readFile(new URL("../package.json", import.meta.url), "utf8"));
const dist = new URL("../dist/", import.meta.url).pathname;
const src = (p) => new URL(`../src/${p}`, import.meta.url).pathname;
await rm(dist, { recursive: true, force: true });

/** Loaded lazily, each from dist/vendor/NAME.cjs. */
const VENDOR = ["openid-client", "undici", "open", "uqr"];
/** In the entry: what every command (or the build's check below) allows there. */
const EAGER_PACKAGES = ["smol-toml"];

const common = {
  bundle: true,
  platform: "node",
  target: "node20.19",
  format: "cjs",
  minify: true,
  legalComments: "linked",
  logLevel: "warning",
  // import() of a bundled module or a vendor file becomes a require() in a promise: no ESM loader.
  supported: { "dynamic-import": false },
};
const vendorPlugin = {
  name: "vendor",
  setup(b) {
    const filter = new RegExp(`^(${VENDOR.map((n) => n.replace(/[-/]/g, "\\$&")).join("|")})$`);
    b.onResolve({ filter }, (args) => ({ path: `./vendor/${args.path}.cjs`, external: true }));
  },
};

const entry = await build({
  ...common,
  entryPoints: [src("main.ts")],
  outfile: `${dist}nix-cache-login.cjs`,
  define: { __VERSION__: JSON.stringify(pkg.version) },
  banner: { js: `#!/usr/bin/env node\n"use strict";\n${nodeVersionCheck(nodeMinimum(pkg.engines.node))}` },
  metafile: true,
  plugins: [vendorPlugin],
});
await chmod(`${dist}nix-cache-login.cjs`, 0o755);

for (const name of VENDOR) {
  await build({
    ...common,
    entryPoints: [name],
    outfile: `${dist}vendor/${name}.cjs`,
    // open (ESM only) finds its bundled xdg-open next to itself; there is none in dist/, so it uses
    // the system's.
    define: { "import.meta.url": "__ncl_url" },
    banner: { js: `"use strict";\nconst __ncl_url = require("node:url").pathToFileURL(__filename).href;` },
  });
}

// What runs before the first import(): the code every command pays for. It must stay light: each of
// these costs more start-up time than all of `status`. Checked on a build that stops at import().
const HEAVY = [
  "node:crypto",
  "node:net",
  "node:http",
  "node:https",
  "node:child_process",
  "node:fs/promises",
  "node:stream",
];
// The modules of `status` and `refresh` (up to its own import() of the renewal) are checked too.
const LIGHT = ["main.ts", "commands/status.ts", "commands/refresh.ts", "commands/service-account.ts"];
const eager = await build({
  ...common,
  entryPoints: LIGHT.map(src),
  outdir: `${dist}eager`,
  write: false,
  legalComments: "none",
  metafile: true,
  plugins: [
    vendorPlugin,
    {
      name: "stop-at-import",
      setup(b) {
        b.onResolve({ filter: /.*/ }, (args) =>
          args.kind === "dynamic-import" ? { path: args.path, external: true } : undefined,
        );
      },
    },
  ],
});
const heavy = Object.values(eager.metafile.outputs).flatMap((o) => [
  ...Object.keys(o.inputs).filter(
    (p) => p.includes("node_modules/") && !EAGER_PACKAGES.some((n) => p.includes(`node_modules/${n}/`)),
  ),
  ...(o.imports ?? [])
    .filter((i) => i.kind !== "dynamic-import")
    .map((i) => i.path)
    .filter((p) => HEAVY.includes(p) || p.startsWith("./vendor/")),
]);
if (heavy.length > 0) {
  fail(`status, --help and refresh --min-valid must not load ${[...new Set(heavy)].join(", ")}`);
}
const bundled = Object.keys(entry.metafile.inputs).filter((p) => p.includes("node_modules/"));
const stray = bundled.filter((p) => !EAGER_PACKAGES.some((n) => p.includes(`node_modules/${n}/`)));
if (stray.length > 0) fail(`third-party code in the entry: ${stray.join(", ")}`);

// Completions and the man page, generated from the command table (src/cli/table.ts).
const docs = await build({
  ...common,
  minify: false,
  stdin: {
    contents: [
      'export { commandTable } from "./src/cli/table.ts";',
      'export { helpFooter } from "./src/cli/help.ts";',
      'export { completionScript } from "./src/commands/completion.ts";',
      'export { manPage } from "./src/commands/manpage.ts";',
    ].join("\n"),
    resolveDir: new URL("..", import.meta.url).pathname,
    loader: "ts",
  },
  format: "esm",
  write: false,
  define: { __VERSION__: JSON.stringify(pkg.version) },
  legalComments: "none",
  // Never run here: the libraries stay imports of node_modules.
  packages: "external",
});
// Next to node_modules, so that its imports resolve; removed at once.
const docsFile = new URL("../.build-docs.mjs", import.meta.url);
await writeFile(docsFile, docs.outputFiles[0].text);
const gen = await import(docsFile.href).finally(() => rm(docsFile, { force: true }));
const table = gen.commandTable(gen.helpFooter());
const epoch = Number(process.env.SOURCE_DATE_EPOCH ?? NaN);
const date = (Number.isFinite(epoch) ? new Date(epoch * 1000) : new Date()).toISOString().slice(0, 10);
await mkdir(`${dist}man`, { recursive: true });
await writeFile(`${dist}man/${pkg.name}.1`, gen.manPage(table, date));
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
 * First of all in the entry: the bundle uses what older Node.js versions lack (such as
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
        '); install a current Node.js (https://nodejs.org/en/download, or see README "Install"), or use the Nix package\\n',
    );
    process.exit(1);
  }
}`;
}

function fail(message) {
  console.error(`build: ${message}`);
  process.exit(1);
}
