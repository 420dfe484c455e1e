/**
 * Other local users for the tests of the threat model (docs/security.md, "Threat model"): `ncl-test-a` and
 * `ncl-test-b`, created on first use. CI runs as root, which these tests need (to create the users,
 * to chown files to them, and to run commands as them with setpriv); as another user they fail,
 * saying so, rather than skip.
 */
import { execFile, spawn } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);

export const USER_A = "ncl-test-a";
export const USER_B = "ncl-test-b";

export interface TestUser {
  name: string;
  uid: number;
  gid: number;
}

export function requireRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new Error(
      "this test needs root: it creates the local users ncl-test-a/ncl-test-b and runs commands as them (CI runs as root)",
    );
  }
}

const known = new Map<string, Promise<TestUser>>();

/** The user, created (no home, no login shell) if it does not exist yet. */
export function ensureUser(name: string): Promise<TestUser> {
  requireRoot();
  let p = known.get(name);
  if (p === undefined) {
    p = (async () => {
      const id = async () => {
        const uid = Number((await run("id", ["-u", name])).stdout.trim());
        const gid = Number((await run("id", ["-g", name])).stdout.trim());
        return { name, uid, gid };
      };
      try {
        return await id();
      } catch {
        try {
          await run("useradd", ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name]);
        } catch (e) {
          // Another test file may have created it meanwhile.
          if (!/already exists/.test(String((e as { stderr?: string }).stderr))) throw e;
        }
        return await id();
      }
    })();
    known.set(name, p);
  }
  return p;
}

export interface AsUserResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command as the user (setpriv: its uid, gid and groups), with a clean environment. */
export async function runAs(
  user: TestUser,
  command: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<AsUserResult> {
  const child = spawn(
    "setpriv",
    ["--reuid", String(user.uid), "--regid", String(user.gid), "--init-groups", "--", command, ...args],
    { env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env }, stdio: ["ignore", "pipe", "pipe"] },
  );
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  return { code, stdout, stderr };
}
