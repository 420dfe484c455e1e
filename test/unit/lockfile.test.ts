// The Nix package (nix/package.nix) fetches every dependency straight from package-lock.json with
// nixpkgs' importNpmLock, which needs each entry's registry URL and hash: an entry without them
// breaks the Nix build, though npm itself would not mind. These tests keep the lock file usable.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

interface LockEntry {
  version?: string;
  hasInstallScript?: boolean;
  resolved?: string;
  integrity?: string;
  link?: boolean;
}

interface Lock {
  name?: string;
  lockfileVersion?: number;
  packages?: Record<string, LockEntry>;
}

const readJson = <T>(name: string): T =>
  JSON.parse(readFileSync(new URL(`../../${name}`, import.meta.url), "utf8")) as T;

const lock = readJson<Lock>("package-lock.json");
const manifest = readJson<{
  name: string;
  allowScripts?: Record<string, boolean>;
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
}>("package.json");
const entries = Object.entries(lock.packages ?? {}).filter(([path]) => path !== "");

const REGISTRY = "https://registry.npmjs.org/";
const SHA512 = /^sha512-[A-Za-z0-9+/]{86}==$/;

test("package-lock.json is lockfile version 3 for this package", () => {
  assert.equal(lock.lockfileVersion, 3);
  assert.equal(lock.name, manifest.name);
  assert.ok(entries.length > 0, "the lock lists no packages");
});

test("every locked package has a registry URL and a sha512 integrity hash", () => {
  const problems: string[] = [];
  for (const [path, entry] of entries) {
    if (entry.link === true) {
      problems.push(`${path}: a link (workspace or file: dependency), which importNpmLock cannot fetch`);
      continue;
    }
    if (typeof entry.resolved !== "string" || !entry.resolved.startsWith(REGISTRY)) {
      problems.push(`${path}: resolved is ${JSON.stringify(entry.resolved)}, not a ${REGISTRY} URL`);
    } else if (entry.version !== undefined && !entry.resolved.endsWith(`-${entry.version}.tgz`)) {
      problems.push(`${path}: resolved ${entry.resolved} is not the tarball of version ${entry.version}`);
    }
    if (typeof entry.integrity !== "string" || !SHA512.test(entry.integrity)) {
      problems.push(`${path}: integrity is ${JSON.stringify(entry.integrity)}, not a sha512-... hash`);
    }
  }
  assert.deepEqual(
    problems,
    [],
    `fix with \`npm install\` (.npmrc keeps resolved URLs):\n${problems.join("\n")}`,
  );
});

test("every dependency in package.json is in the lock file", () => {
  const locked = new Set(entries.map(([path]) => path));
  const wanted = Object.keys({ ...manifest.dependencies, ...manifest.devDependencies });
  const missing = wanted.filter((name) => !locked.has(`node_modules/${name}`));
  assert.deepEqual(missing, [], "package-lock.json is out of date; run `npm install`");
});

test("every locked package with an install script is reviewed in package.json's allowScripts, at its locked version", () => {
  // npm 11 warns at every `npm ci` about install scripts allowScripts does not cover (the demo's
  // first lines on Node 20 were that warning for esbuild, issue 24). An entry names the exact
  // version, so a bump of such a package is reviewed again.
  const withScripts = entries
    .filter(([, e]) => e.hasInstallScript === true)
    .map(([path, e]) => `${path.replace(/^.*node_modules\//, "")}@${e.version ?? "?"}`);
  assert.deepEqual(withScripts.sort(), Object.keys(manifest.allowScripts ?? {}).sort());
  for (const [key, allowed] of Object.entries(manifest.allowScripts ?? {})) assert.equal(allowed, true, key);
});
