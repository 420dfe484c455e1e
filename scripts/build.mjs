// Bundle the CLI into one file: timers start it often, and module resolution over many small files
// costs more than parsing one. The bundle is CommonJS (the source is ESM): Node starts a CJS entry
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

const outfile = `${dist}nix-cache-login.cjs`;
await build({
  ...common,
  entryPoints: [new URL("../src/main.ts", import.meta.url).pathname],
  outfile,
  format: "cjs",
  define: { __VERSION__: JSON.stringify(pkg.version), "import.meta.url": "__ncl_url" },
  banner: {
    // On Node >= 22.1, cache compiled code in the user's own cache directory (never the shared
    // /tmp default, where another user could plant code cache entries).
    js: [
      "#!/usr/bin/env node",
      '"use strict";',
      "const __ncl_url = require('node:url').pathToFileURL(__filename).href;",
      "{ const m = require('node:module'), h = process.env.XDG_CACHE_HOME, home = process.env.HOME;",
      "  const d = h && h.startsWith('/') ? h : home ? home + '/.cache' : undefined;",
      "  if (m.enableCompileCache && d && process.env.NODE_DISABLE_COMPILE_CACHE === undefined) { try { m.enableCompileCache(d + '/nix-cache-login/compile-cache'); } catch {} } }",
    ].join("\n"),
  },
});
await chmod(outfile, 0o755);

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
