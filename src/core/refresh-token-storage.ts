/**
 * Where a user sign-in keeps its refresh token (`token_storage`): the OS keychain, or the token state
 * file. The state file always keeps everything else and records where the token is, never the
 * token itself when it is in the keychain.
 *
 * - `auto` (the default): the keychain when one answers, otherwise the file; where the token went
 *   and why is said on stderr when it changes, and `status` shows it.
 * - `keychain`: the keychain or an error (before any grant is sent).
 * - `file`: the state file (0600 in a 0700 directory).
 *
 * The keychain item is written only when the refresh token changed (a timer's fresh
 * `refresh --min-valid` never touches it), and replaced in place: one item per (issuer, client_id).
 */
import type { Config } from "../config/load.ts";
import { say, warn, type Context } from "../context.ts";
import { CliError, ExitCode, loginRequired } from "../errors.ts";
import {
  itemLabel,
  KEYCHAIN_SIGN_IN_TIMEOUT_MS,
  KEYCHAIN_TIMEOUT_MS,
  KeychainError,
  keychainUnavailable,
  platformKeychain,
  runTool,
  type Keychain,
  type KeychainItem,
  type KeychainTimeout,
} from "../os/keychain.ts";
import type { RefreshTokenVault, TokenState } from "../store/state.ts";

/** For `status`: where the refresh token is kept, in words. */
export function describeRefreshTokenPlace(state: TokenState, env: Context["env"]): string {
  if (state.refresh_token_in === "keychain") return `in ${platformKeychain(env).name}`;
  return state.refresh_token_file_reason === undefined
    ? "in the state file"
    : `in the state file: ${state.refresh_token_file_reason}`;
}

function keychainHint(config: Config): string {
  return `unlock the keyring (sign in to the desktop session, or open Seahorse or Keychain Access), or set token_storage = "file" in ${config.path} and sign in again`;
}

/** A keychain failure as the one-line error the CLI shows (exit 1: the session itself is fine). */
export function keychainCliError(e: unknown, config: Config, doing: string): unknown {
  if (!(e instanceof KeychainError)) return e;
  const message = `${doing}: ${e.message}`;
  const more = { exitCode: ExitCode.failure, hint: keychainHint(config), detail: e.detail };
  switch (e.failure) {
    case "unavailable":
      return new CliError("keychain_unavailable", message, {
        ...more,
        hint: `run it where the desktop session's D-Bus is (systemd user units have it), or set token_storage = "file" in ${config.path} and sign in again`,
      });
    case "locked":
      return new CliError("keychain_locked", message, more);
    case "timeout":
      return new CliError("keychain_timeout", message, more);
    case "failed":
    case "too_large":
      return new CliError("keychain_failed", message, more);
  }
}

/**
 * The stand-in item the sign-in check writes and removes. Its issuer is no URL, so it is never the
 * item of a sign-in, and no lookup of one (all three attributes) matches it.
 */
const CHECK_ITEM: KeychainItem = { issuer: "nix-cache-login:keychain-check", clientId: "check" };

export class KeychainVault implements RefreshTokenVault {
  /** Set by the sign-in check: a fresh sign-in under `keychain` is never kept in the file. */
  private signingIn = false;
  /** The error this vault threw when the keychain refused a new sign-in's refresh token. */
  private refusal: unknown;
  /** The token the keychain item holds, as far as this process knows (read or written by it). */
  private known: string | undefined;
  /** Where this process last put a refresh token, so that saving it again costs nothing. */
  private settled: { token: string; in: "keychain" | undefined; reason: string | undefined } | undefined;
  private kc: Keychain | undefined;
  /**
   * Set during the sign-in's keychain check, before any grant: someone is at the screen to answer
   * an unlock prompt. Every other call (the save after the grant, under the lock) keeps 5 s.
   */
  private someoneThere = false;

  constructor(
    private readonly ctx: Context,
    private readonly config: Config,
    private readonly makeKeychain: (timeout: KeychainTimeout) => Keychain = (timeout) =>
      platformKeychain(ctx.env, process.platform, runTool, timeout),
  ) {}

  private get item(): KeychainItem {
    return { issuer: this.config.issuer, clientId: this.config.clientId };
  }

  private keychain(): Keychain {
    this.kc ??= this.makeKeychain(() =>
      this.someoneThere ? KEYCHAIN_SIGN_IN_TIMEOUT_MS : KEYCHAIN_TIMEOUT_MS,
    );
    return this.kc;
  }

  /**
   * Before a grant or a browser sign-in: with `token_storage = "keychain"`, a keychain that cannot
   * answer here is an error now, not after the provider has issued a token.
   */
  preflight(): void {
    if (this.config.tokenStorage !== "keychain") return;
    const why = keychainUnavailable(this.ctx.env);
    if (why === undefined) return;
    throw new CliError(
      "keychain_unavailable_here",
      `token_storage = "keychain" in ${this.config.path}, but ${why}`,
      {
        exitCode: ExitCode.failure,
        hint: `run it where the desktop session's D-Bus is (systemd user units have it), or set token_storage = "auto" or "file"`,
      },
    );
  }

  /**
   * Before a sign-in (the browser, the device code): with `token_storage = "keychain"`, the keychain
   * must take the new refresh token, or the sign-in fails now, before any grant. A locked Secret
   * Service cannot be told from an empty one by a lookup (secret-tool exits 1 and says nothing for
   * both, and an item that does not exist yet asks for no unlock), but creating an item fails
   * ("Cannot create an item in a locked collection", or an unlock prompt that times out): so a
   * stand-in item is written and removed. The sign-in's own write can still fail later (the
   * keyring locked meanwhile): then `stash` throws instead of keeping the token in the file.
   */
  async preflightSignIn(): Promise<void> {
    this.preflight();
    if (this.config.tokenStorage !== "keychain") return;
    this.signingIn = true;
    const kc = this.keychain();
    // A locked keyring shows its unlock prompt now: say what is waiting, should it take a while.
    const note = setTimeout(
      () => say(this.ctx, `Waiting for ${kc.name} (unlock the keyring if it asks) ...`),
      2_000,
    );
    this.someoneThere = true;
    try {
      await kc.write(CHECK_ITEM, "nix-cache-login keychain check (not a secret)");
    } catch (e) {
      throw keychainCliError(e, this.config, "the keychain cannot take the refresh token of a new sign-in");
    } finally {
      this.someoneThere = false;
      clearTimeout(note);
    }
    await kc.remove(CHECK_ITEM).catch((e: unknown) => {
      warn(
        this.ctx,
        `could not remove the keychain item "${itemLabel(CHECK_ITEM)}": ${(e as Error).message}`,
      );
    });
  }

  /** Whether `e` is the keychain refusing a new sign-in's refresh token (nothing of it was saved). */
  refusedSignIn(e: unknown): boolean {
    return this.refusal !== undefined && e === this.refusal;
  }

  async load(state: TokenState): Promise<TokenState> {
    if (state.refresh_token_in !== "keychain") return state;
    const kc = this.keychain();
    let token: string | undefined;
    try {
      token = await kc.read(this.item);
    } catch (e) {
      throw keychainCliError(e, this.config, "could not read the refresh token");
    }
    if (token === undefined || token === "") {
      throw loginRequired(
        "keychain_item_missing",
        `the refresh token of this sign-in is no longer in ${kc.name} (item "${itemLabel(this.item)}")`,
      );
    }
    this.known = token;
    return { ...state, refresh_token: token };
  }

  async stash(next: TokenState): Promise<{ file: TokenState; after?: () => Promise<void> }> {
    const token = next.refresh_token;
    // No token in memory: none at all, or one in the keychain this run did not need to read.
    if (next.mode !== "user" || token === undefined) return { file: next };
    // A renewal saves a rotated token as soon as it arrives, then writes the state again from the
    // state it started with: where this token went is settled, so no second write or message.
    const settled = this.settled;
    if (settled?.token === token) {
      const inKeychain = settled.in === "keychain";
      return {
        file: {
          ...next,
          refresh_token: inKeychain ? undefined : token,
          refresh_token_in: settled.in,
          refresh_token_file_reason: settled.reason,
        },
      };
    }
    const placed = await this.place(next, token);
    this.settled = { token, in: placed.file.refresh_token_in, reason: placed.file.refresh_token_file_reason };
    return placed;
  }

  /** Puts `token` where token_storage says, once per token. */
  private async place(
    next: TokenState,
    token: string,
  ): Promise<{ file: TokenState; after?: () => Promise<void> }> {
    const inKeychain = next.refresh_token_in === "keychain";
    const storage = this.config.tokenStorage;
    const inFile = (reason: string | undefined): { file: TokenState; after?: () => Promise<void> } => ({
      file: { ...next, refresh_token_in: undefined, refresh_token_file_reason: reason },
      after: inKeychain ? () => this.removeOldItem() : undefined,
    });
    if (storage === "file") return inFile(undefined);
    const inKeychainNow = { ...next, refresh_token: undefined, refresh_token_file_reason: undefined };
    if (inKeychain && token === this.known)
      return { file: { ...inKeychainNow, refresh_token_in: "keychain" } };
    const why = keychainUnavailable(this.ctx.env);
    if (why !== undefined) return this.fallback(next, why, inFile);
    const kc = this.keychain();
    try {
      await kc.write(this.item, token);
    } catch (e) {
      if (!(e instanceof KeychainError)) throw e;
      // A new sign-in has no session to lose yet: under `keychain` its token never goes to the file
      // (the fallback is for a token the provider already rotated). A token too long for the tool
      // would fail every sign-in, so that one still goes to the file.
      if (this.signingIn && storage === "keychain" && e.failure !== "too_large") {
        this.refusal = keychainCliError(
          e,
          this.config,
          "could not save the refresh token of the new sign-in",
        );
        throw this.refusal;
      }
      return this.fallback(next, e.message, inFile);
    }
    this.known = token;
    if (!inKeychain) say(this.ctx, `The refresh token is kept in ${kc.name} (token_storage = ${storage}).`);
    return { file: { ...inKeychainNow, refresh_token_in: "keychain" } };
  }

  /**
   * The keychain did not take the token: keep it in the state file rather than lose the session
   * (the provider may have rotated it already). Said when the reason is new.
   */
  private fallback(
    next: TokenState,
    why: string,
    inFile: (reason: string | undefined) => { file: TokenState; after?: () => Promise<void> },
  ): { file: TokenState; after?: () => Promise<void> } {
    if (this.config.tokenStorage === "keychain") {
      warn(
        this.ctx,
        `could not save the refresh token in the keychain (${why}); kept it in the state file this time`,
      );
    } else if (next.refresh_token_file_reason !== why) {
      say(this.ctx, `The refresh token is kept in the state file: ${why} (token_storage = auto).`);
    }
    return inFile(why);
  }

  /** After moving the token to the file: no copy is left in the keychain. */
  private async removeOldItem(): Promise<void> {
    try {
      await this.keychain().remove(this.item);
      this.known = undefined;
    } catch (e) {
      warn(
        this.ctx,
        `could not remove the old keychain item "${itemLabel(this.item)}": ${(e as Error).message}; remove it by hand`,
      );
    }
  }

  /**
   * `logout`: removes the item when the state names it, or when a keychain answers here (an item
   * left by a run that crashed between the keychain and the state file). Returns whether one was
   * removed; throws a CliError when the item is known to exist but could not be removed.
   */
  async forget(state: TokenState | undefined): Promise<boolean> {
    const named = state?.refresh_token_in === "keychain";
    if (!named && (this.config.tokenStorage === "file" || keychainUnavailable(this.ctx.env) !== undefined)) {
      return false;
    }
    try {
      return await this.keychain().remove(this.item);
    } catch (e) {
      if (!named) return false;
      throw keychainCliError(e, this.config, "could not remove the refresh token from the keychain");
    }
  }
}
