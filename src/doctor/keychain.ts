/**
 * Doctor check of the keychain that keeps a user sign-in's refresh token (token_storage): that it
 * answers, is unlocked, and holds the item the token state names. The token read back is never shown.
 */
import { keychainUnavailable, platformKeychain } from "../os/keychain.ts";
import { CliError } from "../errors.ts";
import type { Context } from "../context.ts";
import type { Setup } from "../core/setup.ts";
import type { TokenState } from "../store/state.ts";
import { check, type Check } from "./report.ts";

export async function keychainCheck(ctx: Context, s: Setup, state: TokenState | undefined): Promise<Check> {
  const storage = s.config.tokenStorage;
  const title = "refresh token storage";
  const name = platformKeychain(ctx.env).name;
  if (state?.refresh_token_in === "keychain") {
    try {
      await s.vault.load(state);
      return check("keychain", title, "ok", `the refresh token is in ${name}, which is unlocked and answers`);
    } catch (e) {
      const err = e instanceof CliError ? e : undefined;
      return check("keychain", title, "problem", err?.message ?? String(e), {
        fix: [err?.hint ?? "run `nix-cache-login login`"],
      });
    }
  }
  const why = keychainUnavailable(ctx.env);
  if (storage === "file") {
    return check(
      "keychain",
      title,
      "ok",
      `the refresh token is kept in the state file (token_storage = "file")`,
    );
  }
  if (storage === "keychain" && why !== undefined) {
    return check("keychain", title, "problem", `token_storage = "keychain", but ${why}`, {
      fix: [
        `run where the desktop session's D-Bus is, or set token_storage = "auto" or "file" in ${s.config.path}`,
      ],
    });
  }
  if (state?.refresh_token !== undefined) {
    const reason = state.refresh_token_file_reason ?? why;
    // auto's fallback works as designed: nothing to fix, so not a note that asks for attention.
    return check(
      "keychain",
      title,
      "ok",
      `the refresh token is kept in the state file${reason === undefined ? "" : ` (${reason})`}`,
      { details: [`token_storage = "${storage}": the next renewal moves it into ${name} when one answers`] },
    );
  }
  return check(
    "keychain",
    title,
    "ok",
    why === undefined
      ? `a sign-in keeps its refresh token in ${name}`
      : `a sign-in keeps its refresh token in the state file: ${why}`,
  );
}
