// Bundle the CLI: timers start it often, and module resolution over many small files costs more
// than parsing one. The bundles are CommonJS (the source is ESM): Node starts a CJS entry
// measurably faster than an ESM one (see `npm run bench`).
//
// dist/nix-cache-login.cjs   all of our own code, once (src/main.ts). Modules reached only through
//                            import() are initialised when first imported, so `status` runs none
//                            of the network code.
// dist/vendor/NAME.cjs       each third-party library the network commands use (openid-client,
//                            undici, open, uqr, proper-lockfile), in a file of its own, required
//                            when first imported: `status`, `--help` and a timer's
//                            `refresh --min-valid` never parse them. smol-toml, which every command
//                            needs, is in the entry.
import { build } from "esbuild";
import { chmod, readFile, rm } from "node:fs/promises";

const pkg = JSON.parse(await readFile(new URL("../package.json", import.meta.url), "utf8"));
const dist = new URL("../dist/", import.meta.url).pathname;
const src = (p) => new URL(`../src/${p}`, import.meta.url).pathname;
await rm(dist, { recursive: true, force: true });

/** Loaded lazily, each from dist/vendor/NAME.cjs. */
const VENDOR = ["openid-client", "undici", "open", "uqr", "proper-lockfile"];
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
  banner: { js: "#!/usr/bin/env node" },
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

function fail(message) {
  console.error(`build: ${message}`);
  process.exit(1);
}
