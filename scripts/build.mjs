// Bundle the CLI: timers start it often, and module resolution over many small files costs more
// than parsing one. The bundles are CommonJS (the source is ESM): Node starts a CJS entry
// measurably faster than an ESM one (see `npm run bench`).
//
// dist/nix-cache-login.cjs   the modules `status`, `--help` and a timer's `refresh --min-valid`
//                            reach (LIGHT below), and smol-toml, which every command needs.
// dist/lazy.cjs              the rest of our code (login, the renewal, doctor, timer, ...), required
//                            at the first import() of one of its modules. It is a function of the
//                            entry's modules and imports them from there, never a copy: the built
//                            code holds one copy of every module (one CliError); the build fails
//                            otherwise. Parsing only the entry saves start-up time: about 60% of
//                            our code is needed only by the network commands.
// dist/vendor/NAME.cjs       each third-party library the network commands use (openid-client,
//                            undici, open, uqr), in a file of its own, required when first
//                            imported: `status`, `--help` and `refresh --min-valid` never parse them.
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

// Which of our modules go in the entry: everything `status`, `--help` and `refresh --min-valid`
// (up to its import() of the renewal) can reach without import(). The rest is in dist/lazy.cjs.
const LIGHT = [
  "main.ts",
  "cli/help.ts",
  "commands/status.ts",
  "commands/refresh.ts",
  "commands/service-account.ts",
];
const root = new URL("..", import.meta.url).pathname;
const stopAtImport = {
  name: "stop-at-import",
  setup(b) {
    b.onResolve({ filter: /.*/ }, (args) =>
      args.kind === "dynamic-import" ? { path: args.path, external: true } : undefined,
    );
  },
};
const eager = await build({
  ...common,
  entryPoints: LIGHT.map(src),
  outdir: `${dist}eager`,
  write: false,
  legalComments: "none",
  metafile: true,
  plugins: [vendorPlugin, stopAtImport],
});
/** Paths as the metafile names them (relative to the project): the modules of the entry. */
const lightInputs = new Set(Object.values(eager.metafile.outputs).flatMap((o) => Object.keys(o.inputs)));
const rel = (abs) => abs.slice(root.length);
const isLight = (abs) => lightInputs.has(rel(abs));

// Our modules outside the entry, each with the names it exports (an ESM pass over the sources).
const lazyAll = await build({
  ...common,
  entryPoints: [src("main.ts")],
  format: "esm",
  splitting: true,
  supported: {},
  outdir: `${dist}scan`,
  write: false,
  legalComments: "none",
  metafile: true,
  plugins: [vendorPlugin],
});
const lazyModules = [
  ...new Set(
    Object.values(lazyAll.metafile.inputs).flatMap((i) =>
      i.imports
        .filter((x) => x.kind === "dynamic-import" && x.path.startsWith("src/") && !lightInputs.has(x.path))
        .map((x) => x.path),
    ),
  ),
].sort();
const lazyExports = new Map();
for (const m of lazyModules) {
  const r = await build({
    entryPoints: [`${root}${m}`],
    bundle: false,
    format: "esm",
    write: false,
    metafile: true,
    outdir: `${dist}scan`,
    logLevel: "warning",
  });
  lazyExports.set(m, Object.values(r.metafile.outputs)[0].exports);
  // The stubs below copy each export once: a binding that changes later would not be seen.
  if (/^export (let|var) /m.test(await readFile(`${root}${m}`, "utf8"))) {
    fail(`${m}: a module loaded from dist/lazy.cjs must not export let or var`);
  }
}

// dist/lazy.cjs: the other modules, as a function of the entry's modules (never run on its own).
const lazy = await build({
  ...common,
  stdin: {
    contents: [
      // require(): each module is initialised when first asked for, as import() would.
      `export default { ${lazyModules.map((m) => `${JSON.stringify(m)}: () => require(${JSON.stringify(`./${m}`)})`).join(", ")} };`,
    ].join("\n"),
    resolveDir: root,
    loader: "js",
    sourcefile: "lazy-modules.js",
  },
  outfile: `${dist}lazy.cjs`,
  define: { __VERSION__: JSON.stringify(pkg.version) },
  banner: {
    js: `"use strict";\nmodule.exports = function (__ncl_entry) {\nconst module = { exports: {} }, exports = module.exports;`,
  },
  footer: { js: "return module.exports.default;\n};" },
  metafile: true,
  plugins: [
    vendorPlugin,
    {
      name: "from-the-entry",
      setup(b) {
        const pkgs = new RegExp(`^(${EAGER_PACKAGES.map((n) => n.replace(/[-/]/g, "\\$&")).join("|")})$`);
        b.onResolve({ filter: pkgs }, (args) => ({ path: `pkg:${args.path}`, namespace: "ncl-entry" }));
        b.onResolve({ filter: /^\./ }, (args) => {
          if (args.kind === "entry-point" || args.importer === "<stdin>") return undefined;
          const abs = new URL(args.path, `file://${args.resolveDir}/`).pathname;
          return isLight(abs) ? { path: rel(abs), namespace: "ncl-entry" } : undefined;
        });
        b.onLoad({ filter: /.*/, namespace: "ncl-entry" }, (args) => ({
          contents: `module.exports = __ncl_entry[${JSON.stringify(args.path)}];`,
          loader: "js",
        }));
      },
    },
  ],
});

// The entry: all of the light modules, once. An import() of a lazy module becomes a stub that
// takes that module's exports from dist/lazy.cjs, which is handed the entry's modules (so that
// there is one CliError, one command table, ... in the built code).
const entry = await build({
  ...common,
  entryPoints: [src("main.ts")],
  outfile: `${dist}nix-cache-login.cjs`,
  define: { __VERSION__: JSON.stringify(pkg.version) },
  banner: { js: `#!/usr/bin/env node\n"use strict";\n${nodeVersionCheck(nodeMinimum(pkg.engines.node))}` },
  metafile: true,
  plugins: [
    vendorPlugin,
    {
      name: "lazy-stubs",
      setup(b) {
        b.onResolve({ filter: /^\.\/lazy\.cjs$/ }, (args) => ({ path: args.path, external: true }));
        b.onResolve({ filter: /^ncl-shared$/ }, () => ({ path: "shared", namespace: "ncl-shared" }));
        b.onResolve({ filter: /^\./ }, (args) => {
          if (args.kind !== "dynamic-import") return undefined;
          const abs = new URL(args.path, `file://${args.resolveDir}/`).pathname;
          return isLight(abs) ? undefined : { path: rel(abs), namespace: "ncl-lazy" };
        });
        b.onLoad({ filter: /.*/, namespace: "ncl-lazy" }, (args) => {
          const names = lazyExports.get(args.path);
          if (names === undefined) fail(`no exports known for ${args.path}`);
          return {
            contents: [
              'import { lazy } from "ncl-shared";',
              `const m = lazy(${JSON.stringify(args.path)});`,
              ...names.map((n) => `export const ${n} = m.${n};`),
            ].join("\n"),
            loader: "js",
            resolveDir: root,
          };
        });
        b.onLoad({ filter: /.*/, namespace: "ncl-shared" }, () => {
          // Our light modules by path; the libraries of the entry by name.
          const spec = (p) => (p.startsWith("src/") ? `./${p}` : p.slice("pkg:".length));
          // Only what dist/lazy.cjs imports: a module exposed here keeps all of its exports.
          const light = Object.keys(lazy.metafile.inputs)
            .filter((p) => p.startsWith("ncl-entry:"))
            .map((p) => p.slice("ncl-entry:".length))
            .sort();
          return {
            contents: [
              ...light.map((p, i) => `import * as m${i} from ${JSON.stringify(spec(p))};`),
              "let loaded;",
              "export function lazy(name) {",
              `  loaded ??= require("./lazy.cjs")({ ${light.map((p, i) => `${JSON.stringify(p)}: m${i}`).join(", ")} });`,
              "  return loaded[name]();",
              "}",
            ].join("\n"),
            loader: "js",
            resolveDir: root,
          };
        });
      },
    },
  ],
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

// One copy of every module: nothing of the entry is compiled into dist/lazy.cjs as well.
const twice = Object.keys(lazy.metafile.inputs).filter(
  (p) => p !== "lazy-modules.js" && entry.metafile.inputs[p],
);
if (twice.length > 0) fail(`in both the entry and dist/lazy.cjs: ${twice.join(", ")}`);

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
      'export { completionScript } from "./src/cli/completion.ts";',
      'export { manPage } from "./src/cli/manpage.ts";',
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
