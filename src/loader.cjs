#!/usr/bin/env node
// nix-cache-login's entry point (dist/nix-cache-login.cjs), made by scripts/build.mjs from this
// template and the light bundle (src/main.ts: everything `status`, `--help` and a timer's
// `refresh --min-valid` run).
//
// Starting is dominated by V8 compiling the code that runs, function by function. The light
// bundle is therefore compiled from a string with a V8 code cache: the first successful run of a
// command stores what V8 compiled, in the user's own cache directory, and later runs of it load
// that instead of compiling. A cache that is missing, foreign or stale (V8 checks its version,
// flags and the source) only means compiling as usual. NODE_DISABLE_COMPILE_CACHE turns it off.
//
// The network commands (dist/commands.cjs) are required normally. Not with Node's own compile
// cache (Node >= 22.1): Node writes that at exit whatever the outcome, in 0755 directories, so a
// failed command would leave files behind and others could list them.
"use strict";

// First of all: the bundles use what older Node.js versions lack (such as
// process.getBuiltinModule) and would fail with a confusing message. This file sticks to syntax
// that old versions parse (no ?. or ??), so that they get this message.
{
  const needed = "__NODE_MIN__"; // package.json's engines.node, filled in by the build
  const want = needed.split(".").map(Number);
  const have = process.versions.node.split(".").map(Number);
  if (have[0] < want[0] || (have[0] === want[0] && have[1] < want[1])) {
    process.stderr.write(
      "nix-cache-login: needs Node.js " +
        needed +
        " or later, found " +
        process.version +
        " (" +
        process.execPath +
        "); install a current Node.js (https://nodejs.org/en/download, or " +
        'see README "Install"), or use the Nix package\n',
    );
    process.exit(1);
  }
}

const fs = require("node:fs");
const vm = require("node:vm");

/** A hash of SOURCE: caches are per build, whatever V8 would accept. */
const BUILD_ID = "__BUILD_ID__";
/** The light bundle, wrapped as a CommonJS module function. */
const SOURCE = __SOURCE__;

const env = process.env;
const base = /^\//.test(env.XDG_CACHE_HOME || "")
  ? env.XDG_CACHE_HOME
  : /^\//.test(env.HOME || "")
    ? `${env.HOME}/.cache`
    : undefined;
const enabled = base !== undefined && env.NODE_DISABLE_COMPILE_CACHE === undefined;

// One cache per kind of command line (the command and the options given, not their values), so
// that each holds the functions its own runs need: a timer's `refresh --min-valid 10m` always
// finds its own.
const args = process.argv.slice(2);
const command = args.find((a) => /^[a-z][a-z-]*$/.test(a)) || "";
const flags = args.filter((a) => a.startsWith("-")).map((a) => a.split("=")[0].replace(/^-+/, ""));
const key = [command || "none", ...[...new Set(flags)].sort()]
  .join("_")
  .replace(/[^A-Za-z0-9_-]/g, "")
  .slice(0, 64);
const cacheDir = `${base}/nix-cache-login/code-cache`;
const cacheFile = enabled
  ? `${cacheDir}/${BUILD_ID}-${process.version}-${process.arch}-${key}.bin`
  : undefined;

/**
 * The cache, if it is a file of our own that nobody else can write (and not a symlink to one):
 * V8 trusts what it loads.
 */
function readCache(file) {
  let fd;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
    const st = fs.fstatSync(fd);
    const uid = typeof process.getuid === "function" ? process.getuid() : -1;
    if (st.uid !== uid || (st.mode & 0o022) !== 0 || !st.isFile()) return undefined;
    const data = Buffer.allocUnsafe(st.size);
    return fs.readSync(fd, data, 0, st.size, 0) === st.size ? data : undefined;
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** Atomically, 0600 in a 0700 directory; caches of other builds are removed. Never an error. */
function writeCache(file, data) {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    fs.mkdirSync(cacheDir, { recursive: true, mode: 0o700 });
    fs.writeFileSync(tmp, data, { mode: 0o600, flag: "wx" });
    fs.renameSync(tmp, file);
    for (const name of fs.readdirSync(cacheDir)) {
      if (!name.startsWith(`${BUILD_ID}-`)) fs.rmSync(`${cacheDir}/${name}`, { force: true });
    }
  } catch {
    try {
      fs.rmSync(tmp, { force: true });
    } catch {
      // Nothing more to undo.
    }
  }
}

const cachedData = cacheFile === undefined ? undefined : readCache(cacheFile);
const script = new vm.Script(SOURCE, { filename: __filename, cachedData });
if (cacheFile !== undefined && (cachedData === undefined || script.cachedDataRejected)) {
  // After a successful run, so that the cache holds what the command compiled.
  process.once("exit", (code) => {
    if (code === 0) writeCache(cacheFile, script.createCachedData());
  });
}
script.runInThisContext()(exports, require, module, __filename, __dirname);
