/**
 * The documentation stays in step with itself and with the code: the README stays short, every
 * page says who it is for, every relative link and section it names exists, and every docs/ page
 * the CLI names (error `see:` lines, doctor, comments in src/) is there.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { docPage, TROUBLESHOOTING } from "../../src/docs.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const DOCS = readdirSync(join(ROOT, "docs"))
  .filter((f) => f.endsWith(".md"))
  .map((f) => `docs/${f}`);
const PAGES = ["README.md", "CONTRIBUTING.md", ...DOCS];
const read = (page: string) => readFileSync(join(ROOT, page), "utf8");

/** Headings outside code blocks, as GitHub turns them into anchors. */
function anchors(page: string): Set<string> {
  const out = new Set<string>();
  let fenced = false;
  for (const line of read(page).split("\n")) {
    if (line.startsWith("```")) fenced = !fenced;
    const m = fenced ? null : /^#+ (.*)$/.exec(line);
    if (m?.[1] !== undefined) {
      out.add(
        m[1]
          .toLowerCase()
          .replace(/[^\p{L}\p{N} _-]/gu, "")
          .replace(/ /g, "-"),
      );
    }
  }
  return out;
}

/** Whether `target` (a path relative to the repository, with an optional #section) exists. */
function resolves(target: string): string | undefined {
  const [path = "", section] = target.split("#");
  let isFile;
  try {
    isFile = statSync(join(ROOT, path)).isFile();
  } catch {
    return `${path} does not exist`;
  }
  if (section === undefined || section === "") return undefined;
  if (!isFile || !path.endsWith(".md")) return `${path} is not a Markdown page`;
  return anchors(path).has(section) ? undefined : `${path} has no section #${section}`;
}

test("the README is a five-minute read: under 15 KB", () => {
  const size = Buffer.byteLength(read("README.md"));
  assert.ok(size < 15 * 1024, `README.md is ${size} bytes`);
});

test("every page of docs/ starts with its title and says who it is for", () => {
  assert.ok(DOCS.length >= 8, `docs/ has ${DOCS.length} pages`);
  for (const page of [...DOCS, "CONTRIBUTING.md"]) {
    const [title, blank, who] = read(page).split("\n");
    assert.match(title ?? "", /^# \S/, `${page}: the first line is its title`);
    assert.equal(blank, "", page);
    assert.match(who ?? "", /^_For /, `${page}: the line after the title says who it is for`);
  }
});

test("every relative link in the README, CONTRIBUTING.md and docs/ points at a page and section that exist", () => {
  const broken: string[] = [];
  for (const page of PAGES) {
    let fenced = false;
    read(page)
      .split("\n")
      .forEach((line, i) => {
        if (line.startsWith("```")) fenced = !fenced;
        if (fenced) return;
        for (const [, target = ""] of line.matchAll(/\]\(([^)\s]+)\)/g)) {
          if (/^[a-z]+:/.test(target)) continue;
          const full = target.startsWith("#")
            ? `${page}${target}`
            : relative(ROOT, join(ROOT, dirname(page), target));
          const problem = resolves(full);
          if (problem !== undefined) broken.push(`${page}:${i + 1}: ${target}: ${problem}`);
        }
      });
  }
  assert.deepEqual(broken, []);
});

test("every error code of docs/errors.md has a page that exists, or none for a mistyped command line", () => {
  // docs/errors.md lists exactly the codes in src/ (test/unit/error-codes.test.ts).
  const codes = [...read("docs/errors.md").matchAll(/^\| `([^`]+)` +\|/gm)].map((m) => m[1] ?? "");
  assert.ok(codes.length > 50, `${codes.length} codes in docs/errors.md`);
  const without: string[] = [];
  for (const code of codes) {
    const page = docPage(code);
    if (page === undefined) without.push(code);
    else assert.equal(resolves(page), undefined, `${code}: ${page}`);
  }
  assert.deepEqual(without.sort(), [
    "bad_argument",
    "bad_duration",
    "bad_option_value",
    "conflicting_options",
    "internal",
    "interrupted",
    "missing_argument",
    "unknown_command",
    "unknown_option",
  ]);
  // The codes that send the reader to troubleshooting are the ones it explains.
  const section = read(TROUBLESHOOTING).split("## Errors")[1] ?? "";
  for (const code of codes.filter((c) => docPage(c) === `${TROUBLESHOOTING}#errors`)) {
    assert.ok(section.includes(`\`${code}\``), `${code} is not explained in ${TROUBLESHOOTING}#errors`);
  }
});

test("every docs/ page named in src/, nix/ and scripts/ exists", () => {
  const named: string[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
      const path = `${dir}/${e.name}`;
      if (e.isDirectory()) walk(path);
      else
        for (const [ref = ""] of readFileSync(join(ROOT, path), "utf8").matchAll(
          /docs\/[a-z-]+\.md(#[a-z0-9-]+)?/g,
        ))
          named.push(`${path}: ${ref}`);
    }
  };
  for (const dir of ["src", "nix", "scripts"]) walk(dir);
  assert.ok(named.length > 0);
  for (const n of named) {
    const ref = n.split(": ")[1] ?? "";
    assert.equal(resolves(ref), undefined, n);
  }
});
