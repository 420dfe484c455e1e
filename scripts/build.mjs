// Bundle the CLI: timers start it often, and module resolution over many small files costs more
// than parsing one. The bundles are CommonJS (the source is ESM): Node starts a CJS entry
// measurably faster than an ESM one (see `npm run bench`).
import { build } from "esbuild";
import { chmod, readFile, rm } from "node:fs/promises";

const pkg = JSON.parse(await readFile(new URL("../package.json", import.meta.url), "utf8"));
const dist = new URL("../dist/", import.meta.url).pathname;
await rm(dist, { recursive: true, force: true });

const common = {
  bundle: true,
  platform: "node",
  target: "node20.19",
  minify: true,
  legalComments: "linked",
  logLevel: "warning",
};

// Two bundles. The entry holds what `status`, `--help` and a timer's `refresh --min-valid` need:
// configuration, token state, netrc reading. The commands that talk to the network (and
// openid-client, jose, the lock and browser libraries) are dist/commands.cjs, required only when
// one of them runs. Start-up is dominated by how much code V8 must read, so the common case reads
// a tenth of it.
const define = { __VERSION__: JSON.stringify(pkg.version), "import.meta.url": "__ncl_url" };
const urlBanner = "const __ncl_url = require('node:url').pathToFileURL(__filename).href;";

const outfile = `${dist}nix-cache-login.cjs`;
const entry = await build({
  ...common,
  entryPoints: [new URL("../src/main.ts", import.meta.url).pathname],
  outfile,
  format: "cjs",
  metafile: true,
  define,
  plugins: [
    {
      name: "cold-commands",
      setup(b) {
        b.onResolve({ filter: /^\.\/cold\.ts$/ }, () => ({ path: "./commands.cjs", external: true }));
      },
    },
  ],
  banner: {
    // On Node >= 22.1, cache compiled code in the user's own cache directory (never the shared
    // /tmp default, where another user could plant code cache entries).
    js: [
      "#!/usr/bin/env node",
      '"use strict";',
      "{ const m = require('node:module'), h = process.env.XDG_CACHE_HOME, home = process.env.HOME;",
      "  const d = h && h.startsWith('/') ? h : home ? home + '/.cache' : undefined;",
      "  if (m.enableCompileCache && d && process.env.NODE_DISABLE_COMPILE_CACHE === undefined) { try { m.enableCompileCache(d + '/nix-cache-login/compile-cache'); } catch {} } }",
    ].join("\n"),
  },
});
await chmod(outfile, 0o755);

// The entry must stay light: these would each cost more start-up time than all of `status`.
const HEAVY = [
  "node:crypto",
  "node:net",
  "node:http",
  "node:https",
  "node:child_process",
  "node:fs/promises",
  "node:stream",
];
const output = Object.values(entry.metafile.outputs)[0];
const packages = Object.keys(output.inputs).filter((p) => p.includes("node_modules/"));
const heavyPackages = packages.filter((p) => !p.includes("node_modules/smol-toml/"));
const heavyBuiltins = (output.imports ?? []).map((i) => i.path).filter((p) => HEAVY.includes(p));
if (heavyPackages.length > 0 || heavyBuiltins.length > 0) {
  console.error(
    `build: the entry bundle must not load ${[...new Set([...heavyPackages, ...heavyBuiltins])].join(", ")}; import it from src/cold.ts's side`,
  );
  process.exit(1);
}
// import.meta.url (defined as __ncl_url) is set up in the commands bundle only.
if ((await readFile(outfile, "utf8")).includes("__ncl_url")) {
  console.error("build: the entry bundle uses import.meta.url; only src/cold.ts's side may");
  process.exit(1);
}

await build({
  ...common,
  entryPoints: [new URL("../src/cold.ts", import.meta.url).pathname],
  outfile: `${dist}commands.cjs`,
  format: "cjs",
  define,
  banner: { js: ['"use strict";', urlBanner].join("\n") },
});

// Proxy support (undici) is a separate file, loaded only when HTTPS_PROXY/HTTP_PROXY is set,
// so that the common case does not parse it at every start.
await build({
  ...common,
  entryPoints: [new URL("../src/proxy.ts", import.meta.url).pathname],
  outfile: `${dist}proxy.mjs`,
  format: "esm",
  banner: {
    js: "import { createRequire as __ncl_cr } from 'node:module'; const require = __ncl_cr(import.meta.url);",
  },
});
