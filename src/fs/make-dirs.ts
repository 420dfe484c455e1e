/**
 * Creating a file's parent directories one level at a time. Not `mkdir -p` (Node's recursive
 * mkdir): where a file system answers ENOENT for a directory whose parent exists (`/proc/nope`), it
 * retries forever at full CPU. Here the walk is bounded by the path's depth, and a failure names
 * the directory, the cause and the setting that led there.
 */
import type { Stats } from "node:fs";
import { lstat, mkdir, readlink, stat } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { CliError } from "../errors.ts";
import { foreignOwner, writableByOthers } from "./file-trust.ts";
import { describeFsError, errnoCode, fsHint } from "./fs-errors.ts";

/**
 * Makes sure `dir` is a directory, creating missing levels with mode 0700 (existing ones are left
 * alone). `where` names the setting that chose the path, for messages (e.g. "netrc_path"). Returns
 * the topmost directory created, if any, so a failed command can remove what it made.
 */
export async function makeDirs(dir: string, where?: string): Promise<string | undefined> {
  const key = where === undefined ? "" : `${where}: `;
  const missing: string[] = [];
  let d = resolve(dir);
  // Each step goes one level up: a path has finitely many levels, so this ends.
  for (;;) {
    let isDir: boolean;
    try {
      isDir = (await stat(d)).isDirectory();
    } catch (e) {
      const code = errnoCode(e);
      if (code !== "ENOENT" && code !== "ENOTDIR") {
        throw new CliError("dir_stat_failed", `${key}cannot look at ${d}: ${describeFsError(e)}`, {
          hint: fsHint(e, where),
        });
      }
      const link = await lstat(d).catch(() => undefined);
      if (link?.isSymbolicLink()) {
        const target = await readlink(d).catch(() => "?");
        throw new CliError(
          "dir_dangling_symlink",
          `${key}${d} is a symlink to ${target}, which does not exist`,
          {
            hint: `create ${target}, or point ${where ?? "the path"} somewhere else`,
          },
        );
      }
      if (link !== undefined && !link.isDirectory()) {
        throw notADirectory(key, d, where);
      }
      const parent = dirname(d);
      if (parent === d) throw new CliError("dir_root_missing", `${key}${d} does not exist`);
      missing.unshift(d);
      d = parent;
      continue;
    }
    if (!isDir) {
      throw notADirectory(key, d, where);
    }
    break;
  }
  // Never create directories in another user's directory (their home, with `sudo -E`): they
  // would be ours there, and lock the owner out of their own files.
  if (missing.length > 0) {
    const owner = foreignOwner(await stat(d));
    if (owner !== undefined) {
      throw new CliError("dir_not_ours", `${key}cannot create ${missing[0]}: ${d} is ${owner}`, {
        hint: `run nix-cache-login as the owner of ${d}, or point ${where ?? "the path"} at a directory of your own`,
      });
    }
  }
  for (const m of missing) {
    try {
      await mkdir(m, { mode: 0o700 });
    } catch (e) {
      // Another process made it meanwhile: fine, as long as it is a directory (checked below).
      if (errnoCode(e) !== "EEXIST") {
        throw new CliError("dir_create_failed", `${key}cannot create directory ${m}: ${describeFsError(e)}`, {
          hint: fsHint(e, where) ?? `point ${where ?? "the path"} at a directory that can be created`,
          cause: e,
        });
      }
    }
    // What is there now, whoever made it: in a directory others can write to (a sticky /tmp),
    // another user may have made it between our look and our mkdir, or in place of ours.
    const what = notOurDirectory(await lstat(m).catch(() => undefined));
    if (what !== undefined) {
      throw new CliError(
        "dir_taken",
        `${key}${m} was created by someone else meanwhile (${what}); nix-cache-login does not use it`,
        {
          hint: `check who made ${m}, or point ${where ?? "the path"} at a directory only you can write`,
        },
      );
    }
  }
  return missing[0];
}

/** Why what stands at a path we just made (or found made) is not a directory of ours alone. */
function notOurDirectory(st: Stats | undefined): string | undefined {
  if (st === undefined) return "it is gone";
  if (!st.isDirectory()) return "it is no directory";
  const owner = foreignOwner(st);
  return owner !== undefined ? `it is ${owner}` : writableByOthers(st);
}

function notADirectory(key: string, d: string, where: string | undefined): CliError {
  return new CliError("dir_not_directory", `${key}${d} is not a directory`, {
    hint: `point ${where ?? "the path"} somewhere else`,
  });
}
