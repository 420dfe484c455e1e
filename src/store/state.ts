import { createHash } from "node:crypto";
import { readFile, unlink } from "node:fs/promises";
import { join } from "node:path";
import { ensureDir, removeCreatedDirs, withLock, writeFileAtomic } from "../atomic-file.ts";
import { CliError } from "../errors.ts";

/** What we keep per (issuer, client_id). The access token itself lives only in the netrc. */
export interface TokenState {
  version: 1;
  issuer: string;
  client_id: string;
  mode: "user" | "service-account";
  refresh_token?: string | undefined;
  /** ISO 8601. */
  access_token_expires_at?: string | undefined;
  /** ISO 8601, or null when the provider said nothing we could read. */
  refresh_token_expires_at?: string | null | undefined;
  /** SHA-256 of the access token, so `status` can tell whether the netrc holds the current one. */
  access_token_sha256?: string | undefined;
  username?: string | undefined;
  updated_at?: string | undefined;
  discovery?: { fetched_at: string; metadata: Record<string, unknown> } | undefined;
}

export function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

export class StateStore {
  readonly file: string;

  constructor(
    readonly dir: string,
    readonly issuer: string,
    readonly clientId: string,
  ) {
    // One file per issuer + client; hashed so any issuer URL or client id makes a safe file name.
    const id = sha256(`${issuer}\n${clientId}`).slice(0, 16);
    this.file = join(dir, `${id}.json`);
  }

  async read(): Promise<TokenState | undefined> {
    let text: string;
    try {
      text = await readFile(this.file, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw new CliError(`${this.file}: cannot read token state: ${(e as Error).message}`);
    }
    try {
      const parsed = JSON.parse(text) as TokenState;
      if (parsed.version !== 1 || parsed.issuer !== this.issuer || parsed.client_id !== this.clientId) {
        throw new Error("unexpected content");
      }
      return parsed;
    } catch {
      throw new CliError(`${this.file}: token state is corrupt`, {
        hint: "delete it and sign in again (`nix-cache-login logout`, then `nix-cache-login login`)",
      });
    }
  }

  async write(state: TokenState): Promise<void> {
    await ensureDir(this.dir);
    await writeFileAtomic(
      this.file,
      `${JSON.stringify({ ...state, updated_at: new Date().toISOString() }, null, 2)}\n`,
      "utf8",
    );
  }

  /** Exclusive lock across read -> network -> write, so parallel runs never reuse a rotated token. */
  async locked<T>(fn: () => Promise<T>): Promise<T> {
    const created = await ensureDir(this.dir);
    try {
      return await withLock(this.file, fn);
    } catch (e) {
      // A failed command leaves the tree as it found it, down to the directories.
      await removeCreatedDirs(this.dir, created);
      throw e;
    }
  }

  async remove(): Promise<boolean> {
    try {
      await unlink(this.file);
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return false;
      throw e;
    }
  }

  empty(mode: TokenState["mode"]): TokenState {
    return { version: 1, issuer: this.issuer, client_id: this.clientId, mode };
  }
}
