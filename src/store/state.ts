import { join } from "node:path";
import { readOpened } from "../fs/read-opened.ts";
import { CliError } from "../errors.ts";
import {
  foreignOwner,
  serviceUserHint,
  UntrustedPath,
  walkTrusted,
  writableByOthers,
} from "../fs/file-trust.ts";
import { fsReason } from "../fs/fs-errors.ts";

/** What we keep per (issuer, client_id), in a file only its owner can read (0600 in a 0700 dir). */
export interface TokenState {
  version: 1;
  issuer: string;
  client_id: string;
  mode: "user" | "service-account";
  /**
   * In the file only when `refresh_token_in` is absent. In memory it is also the token read back from
   * the keychain (see RefreshTokenVault.load); the file then never holds it.
   */
  refresh_token?: string | undefined;
  /** Set when the refresh token lives in the OS keychain (token_storage), not in this file. */
  refresh_token_in?: "keychain" | undefined;
  /**
   * Why a `token_storage = "auto"` sign-in keeps its refresh token in this file (no session bus, no
   * Secret Service, ...): `status` shows it, and it is said on stderr when it changes.
   */
  refresh_token_file_reason?: string | undefined;
  /**
   * The access token last written to the netrc: `status` compares it with the netrc entry. It is
   * the same secret as the netrc's password, kept with the same protection.
   */
  access_token?: string | undefined;
  /** ISO 8601. */
  access_token_expires_at?: string | undefined;
  /** ISO 8601, or null when the provider said nothing we could read. */
  refresh_token_expires_at?: string | null | undefined;
  /** Set for an offline token (Keycloak: scope offline_access; `refresh_expires_in: 0` or `typ` "Offline"). */
  refresh_token_offline?: true | undefined;
  username?: string | undefined;
  /** The ID token's `sub`: a different one at the next sign-in is another account. */
  subject?: string | undefined;
  /**
   * Set when the provider gave no lifetime for the access token (no expires_in, not a JWT):
   * access_token_expires_at is then an assumption (`default_token_lifetime`), not the provider's word.
   */
  access_token_expiry_assumed?: boolean | undefined;
  updated_at?: string | undefined;
  /**
   * The provider's clock against ours, measured at the last grant (../core/provider-clock.ts):
   * provider minus local in ms, the local time of the measurement, and the boot and time since
   * boot it was taken in (Linux), which tell later whether the local clock moved since.
   */
  clock?: { offset_ms: number; measured_at: string; boot_id?: string; uptime_ms?: number } | undefined;
  /** Only the fields of the discovery document the tool uses (see DISCOVERY_FIELDS). */
  discovery?: { fetched_at: string; metadata: Record<string, unknown> } | undefined;
  /**
   * Set when the provider refused the refresh token (invalid_grant): the session is over whatever
   * the token's own expiry says. `description` is the provider's error_description, printable.
   */
  session_ended?: { at: string; description: string | null } | undefined;
}

/**
 * Where the refresh token lives when it is not in the state file: the OS keychain. The store asks it
 * before every state write (../core/refresh-token-storage.ts implements it); reading the state never
 * touches it, so `status` and a fresh `refresh --min-valid` start no keychain process.
 */
export interface RefreshTokenVault {
  /** The state with `refresh_token` read back from the keychain when the state says it is there. */
  load(state: TokenState): Promise<TokenState>;
  /**
   * Puts `next`'s refresh token where it belongs (the keychain is written only when the token
   * changed) and returns what the state file is to hold; `after` runs once that file is written.
   */
  stash(next: TokenState): Promise<{ file: TokenState; after?: (() => Promise<void>) | undefined }>;
}

/** Whether the state has a refresh token, in the file or in the keychain. */
export function hasRefreshToken(state: TokenState | undefined): boolean {
  return state?.refresh_token !== undefined || state?.refresh_token_in === "keychain";
}

/** The token state file cannot be used; `login`, `service-account` and `logout` move it aside. */
export class CorruptStateError extends CliError {}

/** No state file of ours comes near this: its tokens and the kept discovery fields are bounded. */
export const MAX_STATE_BYTES = 1024 * 1024;

const CORRUPT_HINT =
  "run `nix-cache-login login` (it moves the file aside and starts afresh) or `nix-cache-login logout` (it removes it)";

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
    /** Where a refresh token may live besides this file; none: always in the file. */
    readonly vault?: RefreshTokenVault,
  ) {
    this.file = join(dir, stateFileName(issuer, clientId));
  }

  read(): TokenState | undefined {
    if (!checkStateDir(this.dir)) return undefined;
    let text: string;
    try {
      text = readTrustedFile(this.file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      if (e instanceof CliError) throw e;
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "ELOOP")
        throw untrusted("state_symlink", this.file, "is a symbolic link", `rm ${this.file}`);
      throw new CliError("state_unreadable", `${this.file}: cannot read token state: ${fsReason(e)}`);
    }
    try {
      const parsed: unknown = JSON.parse(text);
      if (!isTokenState(parsed) || parsed.issuer !== this.issuer || parsed.client_id !== this.clientId) {
        throw new Error("unexpected content");
      }
      return parsed;
    } catch {
      throw new CorruptStateError("state_corrupt", `${this.file}: token state is corrupt`, {
        hint: CORRUPT_HINT,
      });
    }
  }

  empty(mode: TokenState["mode"]): TokenState {
    return { version: 1, issuer: this.issuer, client_id: this.clientId, mode };
  }
}

type Check = (v: unknown) => boolean;
const string: Check = (v) => typeof v === "string";
const number: Check = (v) => typeof v === "number" && Number.isFinite(v);
const boolean: Check = (v) => typeof v === "boolean";
const orNull =
  (c: Check): Check =>
  (v) =>
    v === null || c(v);
const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);
/** An object whose fields pass their checks; a field not listed, or absent and optional, passes. */
const fields =
  (checks: Record<string, Check>, required: readonly string[] = []): Check =>
  (v) =>
    isObject(v) &&
    required.every((k) => v[k] !== undefined) &&
    Object.entries(checks).every(([k, c]) => v[k] === undefined || c(v[k]));

/**
 * Every field of a TokenState, of its type: a state another version (or a hand) wrote with a number
 * where a date's string belongs reached code that called its methods (`e?.split is not a function`);
 * it is corrupt like any other it cannot use.
 */
const isTokenState = (v: unknown): v is TokenState =>
  fields(
    {
      version: (x) => x === 1,
      issuer: string,
      client_id: string,
      mode: (x) => x === "user" || x === "service-account",
      refresh_token: string,
      refresh_token_in: (x) => x === "keychain",
      refresh_token_file_reason: string,
      access_token: string,
      access_token_expires_at: string,
      refresh_token_expires_at: orNull(string),
      refresh_token_offline: boolean,
      username: string,
      subject: string,
      access_token_expiry_assumed: boolean,
      updated_at: string,
      clock: fields({ offset_ms: number, measured_at: string, boot_id: string, uptime_ms: number }, [
        "offset_ms",
        "measured_at",
      ]),
      discovery: fields({ fetched_at: string, metadata: isObject }, ["fetched_at", "metadata"]),
      session_ended: fields({ at: string, description: orNull(string) }, ["at", "description"]),
    },
    ["version", "issuer", "client_id", "mode"],
  )(v);

function untrusted(code: string, path: string, why: string, fix: string, hint?: string): CliError {
  return new CliError(
    code,
    `${path}: token state ${why}, so another user could have written it; nix-cache-login does not use it`,
    { hint: hint ?? `check who changed it, then \`${fix}\` and sign in again if needed` },
  );
}

/**
 * The state directory must be ours (or root's) and writable by nobody else: a state planted there
 * could name another token endpoint, which would then receive our client secret or refresh token.
 * Returns false when the directory does not exist.
 */
export function checkStateDir(dir: string): boolean {
  let st;
  try {
    // Every directory on the way too (and through symbolic links): whoever may replace one of
    // them may replace the state directory.
    st = walkTrusted(dir).st;
  } catch (e) {
    if (e instanceof UntrustedPath) {
      throw new CliError(
        "state_path_untrusted",
        `${dir}: the token state directory's path goes through ${e.at}, ${e.why}; nix-cache-login does not use it`,
        { hint: e.fix },
      );
    }
    throw new CliError("state_dir_unusable", `${dir}: cannot use the token state directory: ${fsReason(e)}`, {
      hint: "check $XDG_STATE_HOME and the directory's owner and permissions",
    });
  }
  if (st === undefined) return false;
  if (!st.isDirectory()) {
    throw new CliError("state_dir_not_directory", `${dir}: the token state directory is not a directory`, {
      hint: `remove it (\`rm ${dir}\`) and sign in again`,
    });
  }
  const owner = foreignOwner(st);
  if (owner !== undefined) {
    throw new CliError(
      "state_dir_foreign_owner",
      `${dir}: token state directory ${owner}, so another user could have written it; nix-cache-login does not use it`,
      {
        hint:
          serviceUserHint(st.uid) ??
          `check who created it, then remove it (\`rm -r ${dir}\`) and sign in again`,
      },
    );
  }
  const writable = writableByOthers(st);
  if (writable !== undefined) {
    throw new CliError(
      "state_dir_writable_by_others",
      `${dir}: token state directory ${writable}, so another user could have written it; nix-cache-login does not use it`,
      { hint: `check its files, then \`chmod 700 ${dir}\`` },
    );
  }
  return true;
}

/**
 * Reads a state file that is ours (or root's), not a symlink, a regular file (a FIFO is refused, not
 * waited on: ../fs/read-opened.ts) and writable by nobody else.
 */
function readTrustedFile(file: string): string {
  return readOpened(file, {
    noFollow: true,
    check(st) {
      const owner = foreignOwner(st);
      if (owner !== undefined)
        throw untrusted("state_foreign_owner", file, owner, `rm ${file}`, serviceUserHint(st.uid));
      const writable = writableByOthers(st);
      if (writable !== undefined)
        throw untrusted("state_writable_by_others", file, `file ${writable}`, `chmod 600 ${file}`);
      if (!st.isFile())
        throw untrusted("state_not_regular_file", file, "is not a regular file", `rm ${file}`);
    },
    maxBytes: MAX_STATE_BYTES,
    tooLarge: (size) =>
      new CorruptStateError(
        "state_too_large",
        `${file}: token state is corrupt: ${size ?? `over ${MAX_STATE_BYTES}`} bytes, and a state file is at most ${MAX_STATE_BYTES} (1 MiB)`,
        { hint: CORRUPT_HINT },
      ),
  });
}
