// Bundle the CLI into one ESM file: timers start it often, so module resolution and
// many small files would cost more than parsing one file.
import { build } from "esbuild";
import { chmod, readFile } from "node:fs/promises";

const pkg = JSON.parse(await readFile(new URL("../package.json", import.meta.url), "utf8"));
const outfile = new URL("../dist/nix-cache-login.mjs", import.meta.url).pathname;

await build({
  entryPoints: [new URL("../src/main.ts", import.meta.url).pathname],
  outfile,
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20.19",
  minify: true,
  legalComments: "linked",
  sourcemap: false,
  define: { __VERSION__: JSON.stringify(pkg.version) },
  banner: {
    // Some bundled CommonJS dependencies call require(); give them one.
    js: "#!/usr/bin/env node\nimport { createRequire as __ncl_cr } from 'node:module'; const require = __ncl_cr(import.meta.url);",
  },
  logLevel: "warning",
});
await chmod(outfile, 0o755);

// Proxy support (undici) is a separate file, loaded only when HTTPS_PROXY/HTTP_PROXY is set,
// so that the common case does not parse it at every start.
await build({
  entryPoints: [new URL("../src/proxy.ts", import.meta.url).pathname],
  outfile: new URL("../dist/proxy.mjs", import.meta.url).pathname,
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20.19",
  minify: true,
  legalComments: "linked",
  banner: {
    js: "import { createRequire as __ncl_cr } from 'node:module'; const require = __ncl_cr(import.meta.url);",
  },
  logLevel: "warning",
});
