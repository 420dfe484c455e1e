/**
 * Another user's HOME is not ours to use. `sudo -E` (and `sudo` without `-H` where the sudoers
 * policy keeps HOME) runs root with the user's HOME: every default path (configuration, token
 * state, netrc) then lies in that home, and a sign-in there would leave root-owned directories in
 * it that lock its owner out. Like git's safe.directory, nix-cache-login refuses instead, saying
 * how to run it for that user or for root. Paths outside that home (--config, $XDG_STATE_HOME,
 * netrc_path) are fine.
 */
import { statSync } from "node:fs";
import { CliError, ExitCode } from "../errors.ts";
import { userName } from "../fs/file-trust.ts";
import type { Env } from "../os/env.ts";

function inside(path: string, dir: string): boolean {
  return path === dir || path.startsWith(`${dir}/`);
}

/** Throws when one of `paths` lies in a $HOME that belongs to another user than the one we run as. */
export function checkHomeIsOurs(env: Env, paths: readonly string[]): void {
  const uid = process.getuid?.();
  const raw = env.HOME;
  if (uid === undefined || raw === undefined || raw === "") return;
  const home = raw.replace(/\/+$/, "");
  // HOME=/ (some services) is not a home: everything would be "in" it.
  if (home === "") return;
  if (!paths.some((p) => inside(p, home))) return;
  let owner: number;
  try {
    owner = statSync(home).uid;
  } catch {
    return; // No such home: nothing in it to break, and nothing of another user's.
  }
  if (owner === uid) return;
  const them = userName(owner) ?? `uid ${owner}`;
  const me = uid === 0 ? "root" : (userName(uid) ?? `uid ${uid}`);
  throw new CliError(
    "home_not_ours",
    `$HOME is ${raw}, which belongs to ${them}, but nix-cache-login runs as ${me}; it does not use or create files in another user's home`,
    {
      exitCode: ExitCode.usage,
      hint:
        uid === 0
          ? `for ${them}, run it as ${them} (\`sudo -u ${them} -H nix-cache-login ...\`, or without sudo); for root, give root its own HOME (\`sudo -H nix-cache-login ...\`)`
          : `run it as ${them}, or set HOME to your own home`,
    },
  );
}
