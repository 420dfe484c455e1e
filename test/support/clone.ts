// A clean clone of this checkout for the packaging tests: the committed (and staged) files only, no
// dist/, with the locked node_modules shared through a symlink (what `npm ci` installed here).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { cp, mkdir, symlink } from "node:fs/promises";
import { dirname, join } from "node:path";
import { ROOT } from "./cli.ts";

export async function cleanClone(into: string): Promise<string> {
  const tracked = execFileSync("git", ["ls-files", "-z"], { cwd: ROOT, encoding: "utf8" })
    .split("\0")
    .filter((f) => f !== "" && existsSync(join(ROOT, f)));
  for (const f of tracked) {
    await mkdir(dirname(join(into, f)), { recursive: true });
    await cp(join(ROOT, f), join(into, f));
  }
  await symlink(join(ROOT, "node_modules"), join(into, "node_modules"));
  assert.ok(!existsSync(join(into, "dist")), "the clone must start without dist/");
  return into;
}
