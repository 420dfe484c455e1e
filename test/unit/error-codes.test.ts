/**
 * Every CliError's code is written once in the tree, as the first argument of `new CliError(...)`
 * or of a helper that passes its own first argument on as the code; and docs/errors.md lists
 * exactly those codes. A second site with the same code, a code in the wrong case, or a code the
 * docs do not name fails here.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";

const root = new URL("../../", import.meta.url).pathname;

/** Helpers whose first parameter is the code of the CliError they make. */
const HELPERS = ["loginRequired", "usage", "fileError", "untrusted", "refuse"];
/** Constructors that take a code first: CliError and its subclasses with the same constructor. */
const CONSTRUCTORS = ["CliError", "CorruptStateError"];
/** Codes that no CliError carries: render.ts gives them to what is not one. */
const RENDERED = ["internal"];

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) =>
    d.isDirectory() ? sources(join(dir, d.name)) : d.name.endsWith(".ts") ? [join(dir, d.name)] : [],
  );
}

interface Site {
  code: string;
  file: string;
  line: number;
}

function codeSites(): { sites: Site[]; passedOn: Site[]; other: Site[] } {
  const sites: Site[] = [];
  const passedOn: Site[] = [];
  const other: Site[] = [];
  const callee = `(?:new (?:${CONSTRUCTORS.join("|")})|super|\\b(?:${HELPERS.join("|")}))`;
  const call = new RegExp(`${callee}\\(\\s*("[^"\\n]*"|[^\\s,)]+)`, "g");
  for (const file of sources(join(root, "src"))) {
    const text = readFileSync(file, "utf8");
    const rel = file.slice(root.length);
    for (const m of text.matchAll(call)) {
      const first = m[1] as string;
      const site = { code: first, file: rel, line: text.slice(0, m.index).split("\n").length };
      if (first.startsWith('"')) sites.push({ ...site, code: JSON.parse(first) as string });
      // super() of a class that is no CliError (its message); the helpers' own definitions.
      else if (m[0].startsWith("super") || first === "code:") continue;
      else if (first === "code" && m[0].startsWith("new ")) passedOn.push(site);
      else other.push(site);
    }
  }
  return { sites, passedOn, other };
}

function documented(): string[] {
  const text = readFileSync(join(root, "docs/errors.md"), "utf8");
  return [...text.matchAll(/^\| `([^`]+)` +\|/gm)].map((m) => m[1] as string);
}

describe("error codes", () => {
  const { sites, passedOn, other } = codeSites();

  test("every CliError is made with a code written where it is made", () => {
    assert.deepEqual(other, [], "a CliError whose code is not a string literal");
    // Each helper makes its CliError with the code it was given, and nothing else does.
    assert.equal(passedOn.length, HELPERS.length, JSON.stringify(passedOn));
    assert.ok(sites.length > 90, `only ${sites.length} codes found: is the scan broken?`);
  });

  test("codes are lower snake_case and unique in the tree", () => {
    for (const s of sites) assert.match(s.code, /^[a-z][a-z0-9]*(_[a-z0-9]+)*$/, `${s.file}:${s.line}`);
    const seen = new Map<string, Site>();
    const twice: string[] = [];
    for (const s of sites) {
      const first = seen.get(s.code);
      if (first !== undefined) twice.push(`${s.code}: ${first.file}:${first.line} and ${s.file}:${s.line}`);
      seen.set(s.code, s);
    }
    assert.deepEqual(twice, []);
  });

  test("docs/errors.md lists every code, once, and no other", () => {
    const docs = documented();
    assert.deepEqual(
      docs.filter((c, i) => docs.indexOf(c) !== i),
      [],
      "listed twice",
    );
    const tree = [...sites.map((s) => s.code), ...RENDERED];
    assert.deepEqual(tree.filter((c) => !docs.includes(c)).sort(), [], "in the tree, not in docs/errors.md");
    assert.deepEqual(docs.filter((c) => !tree.includes(c)).sort(), [], "in docs/errors.md, not in the tree");
  });

  test("render.ts gives `internal` to whatever is not a CliError", () => {
    const render = readFileSync(join(root, "src/cli/render.ts"), "utf8");
    for (const code of RENDERED) assert.ok(render.includes(`code: "${code}"`), code);
  });
});
