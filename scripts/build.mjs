// Bundle the CLI: timers start it often, and module resolution over many small files costs more
// than parsing one. The bundles are CommonJS (the source is ESM): Node starts a CJS entry
// measurably faster than an ESM one (see `npm run bench`).
//
// dist/nix-cache-login.cjs  the entry: src/loader.cjs around the light bundle (src/main.ts), which
//                           holds what `status`, `--help` and a timer's `refresh --min-valid` need
// dist/commands.cjs         the commands that talk to the network (src/cold.ts, with openid-client,
//                           jose, the lock and browser libraries), required when one of them runs
// dist/proxy.mjs            undici, imported only when HTTPS_PROXY/HTTP_PROXY is set
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
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

const common = {
  bundle: true,
  platform: "node",
  target: "node20.19",
  minify: true,
  legalComments: "linked",
  logLevel: "warning",
};
const define = { __VERSION__: JSON.stringify(pkg.version), "import.meta.url": "__ncl_url" };

// The light bundle. Its `import("./cold.ts")` becomes a require() of dist/commands.cjs: the loader
// compiles it with vm.Script, where import() would need a module loader of its own.
const light = await build({
  ...common,
  entryPoints: [src("main.ts")],
  outfile: `${dist}nix-cache-login.cjs`,
  write: false,
  format: "cjs",
  metafile: true,
  define,
  supported: { "dynamic-import": false },
  plugins: [
    {
      name: "cold-commands",
      setup(b) {
        b.onResolve({ filter: /^\.\/cold\.ts$/ }, () => ({ path: "./commands.cjs", external: true }));
      },
    },
  ],
});

// The light bundle must stay light: each of these costs more start-up time than all of `status`.
const HEAVY = [
  "node:crypto",
  "node:net",
  "node:http",
  "node:https",
  "node:child_process",
  "node:fs/promises",
  "node:stream",
];
const output = Object.values(light.metafile.outputs).find((o) => o.entryPoint !== undefined);
const heavy = [
  ...Object.keys(output.inputs).filter(
    (p) => p.includes("node_modules/") && !p.includes("node_modules/smol-toml/"),
  ),
  ...(output.imports ?? []).map((i) => i.path).filter((p) => HEAVY.includes(p)),
];
await mkdir(dist, { recursive: true });
const files = Object.fromEntries(light.outputFiles.map((f) => [f.path.slice(dist.length), f.text]));
const code = files["nix-cache-login.cjs"];
if (heavy.length > 0) fail(`the light bundle must not load ${[...new Set(heavy)].join(", ")}`);
if (code.includes("__ncl_url")) fail("the light bundle uses import.meta.url (only src/cold.ts's side may)");
if (code.includes("import(")) fail("the light bundle uses import(), which its loader does not provide");

const wrapped = `(function (exports, require, module, __filename, __dirname) {"use strict";${code}\n})`;
const loader = (await readFile(src("loader.cjs"), "utf8"))
  .replace('"__BUILD_ID__"', JSON.stringify(createHash("sha256").update(wrapped).digest("hex").slice(0, 16)))
  .replace("__SOURCE__", () => JSON.stringify(wrapped))
  .replace("__NODE_MIN__", nodeMinimum(pkg.engines.node));
if (loader.includes("__SOURCE__") || loader.includes("__BUILD_ID__") || loader.includes("__NODE_MIN__"))
  fail("src/loader.cjs lost a placeholder");
await writeFile(`${dist}nix-cache-login.cjs`, loader);
await writeFile(`${dist}nix-cache-login.cjs.LEGAL.txt`, files["nix-cache-login.cjs.LEGAL.txt"] ?? "");
await chmod(`${dist}nix-cache-login.cjs`, 0o755);

await build({
  ...common,
  entryPoints: [src("cold.ts")],
  outfile: `${dist}commands.cjs`,
  format: "cjs",
  define,
  banner: { js: `"use strict";\nconst __ncl_url = require('node:url').pathToFileURL(__filename).href;` },
});

await build({
  ...common,
  entryPoints: [src("proxy.ts")],
  outfile: `${dist}proxy.mjs`,
  format: "esm",
  banner: {
    js: "import { createRequire as __ncl_cr } from 'node:module'; const require = __ncl_cr(import.meta.url);",
  },
});

// Completions and the man page, generated from the command table in src/cli.ts.
const docs = await build({
  ...common,
  minify: false,
  stdin: {
    contents: [
      'export { commandTable } from "./src/cli.ts";',
      'export { completionScript } from "./src/commands/completion.ts";',
      'export { manPage } from "./src/commands/manpage.ts";',
    ].join("\n"),
    resolveDir: new URL("..", import.meta.url).pathname,
    loader: "ts",
  },
  format: "esm",
  write: false,
  define,
  legalComments: "none",
});
const gen = await import(
  `data:text/javascript;base64,${Buffer.from(docs.outputFiles[0].text).toString("base64")}`
);
const table = gen.commandTable();
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

function fail(message) {
  console.error(`build: ${message}`);
  process.exit(1);
}
