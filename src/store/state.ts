import { readFileSync } from "node:fs";
import { join } from "node:path";
import { CliError } from "../errors.ts";

/** What we keep per (issuer, client_id), in a file only its owner can read (0600 in a 0700 dir). */
export interface TokenState {
  version: 1;
  issuer: string;
  client_id: string;
  mode: "user" | "service-account";
  refresh_token?: string | undefined;
  /**
   * The access token last written to the netrc: `status` compares it with the netrc entry. It is
   * the same secret as the netrc's password, kept with the same protection.
   */
  access_token?: string | undefined;
  /** ISO 8601. */
  access_token_expires_at?: string | undefined;
  /** ISO 8601, or null when the provider said nothing we could read. */
  refresh_token_expires_at?: string | null | undefined;
  username?: string | undefined;
  updated_at?: string | undefined;
  discovery?: { fetched_at: string; metadata: Record<string, unknown> } | undefined;
  /**
   * Set when the provider refused the refresh token (invalid_grant): the session is over whatever
   * the token's own expiry says. `description` is the provider's error_description, printable.
   */
  session_ended?: { at: string; description: string | null } | undefined;
}

/** The token state file cannot be used; `login`, `service-account` and `logout` move it aside. */
export class CorruptStateError extends CliError {}

/** Room for the `.lock` and temp-file suffixes within the usual 255-byte file name limit. */
const MAX_NAME = 200;

/**
 * One file per issuer + client, named by both (percent-encoded, so any issuer URL or client id is a
 * safe, unambiguous file name that says whose it is); a name too long for the file system is a hash.
 */
export function stateFileName(issuer: string, clientId: string): string {
  const name = `${encodeURIComponent(clientId)}@${encodeURIComponent(issuer)}.json`;
  if (name.length <= MAX_NAME) return name;
  // Loaded only here: node:crypto costs more start-up time than everything `status` does.
  const { createHash } = process.getBuiltinModule("node:crypto");
  return `${createHash("sha256").update(`${issuer}\n${clientId}`).digest("hex").slice(0, 32)}.json`;
}

/** Reading the state; writing it (locked, atomic) is in ./write.ts, which only renewals load. */
export class StateStore {
  readonly file: string;

  constructor(
    readonly dir: string,
    readonly issuer: string,
    readonly clientId: string,
  ) {
    this.file = join(dir, stateFileName(issuer, clientId));
  }

  read(): TokenState | undefined {
    let text: string;
    try {
      text = readFileSync(this.file, "utf8");
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
      throw new CorruptStateError(`${this.file}: token state is corrupt`, {
        hint: "run `nix-cache-login login` (or `logout`): it moves the file aside and starts afresh",
      });
    }
  }

  empty(mode: TokenState["mode"]): TokenState {
    return { version: 1, issuer: this.issuer, client_id: this.clientId, mode };
  }
}
