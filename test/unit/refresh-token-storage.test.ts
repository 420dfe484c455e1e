/**
 * Where a sign-in's refresh token goes when the keychain refuses it, against a stand-in keychain
 * (the real Secret Service runs in test/e2e/keychain.test.ts): a new sign-in under `keychain` is
 * refused, a renewal keeps its rotated token in the file.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Config } from "../../src/config/load.ts";
import type { Context } from "../../src/context.ts";
import { KeychainVault } from "../../src/core/refresh-token-storage.ts";
import { KeychainError, type Keychain, type KeychainItem } from "../../src/os/keychain.ts";
import type { TokenState } from "../../src/store/state.ts";

const ISSUER = "https://sso.example.org/realms/nix";
const BUS = { DBUS_SESSION_BUS_ADDRESS: "unix:path=/run/user/1000/bus" };

function context(): { ctx: Context; stderr: () => string } {
  let text = "";
  const ctx: Context = {
    env: BUS,
    stdout: { write: () => true },
    stderr: { write: (t: string) => (text += t) },
    now: () => new Date(0),
    signal: new AbortController().signal,
    verbose: false,
    configFlag: undefined,
  };
  return { ctx, stderr: () => text };
}

function config(tokenStorage: Config["tokenStorage"]): Config {
  return {
    path: "/home/u/.config/nix-cache-login/config.toml",
    issuer: ISSUER,
    clientId: "nix-cache",
    tokenStorage,
  } as Config;
}

/** A keychain whose writes fail with `failure` (none: they succeed); every call is recorded. */
function keychain(failure?: KeychainError["failure"]): { kc: Keychain; calls: string[] } {
  const calls: string[] = [];
  const name = (item: KeychainItem) => `${item.issuer} ${item.clientId}`;
  const kc: Keychain = {
    name: "the Secret Service",
    read: (item) => {
      calls.push(`read ${name(item)}`);
      return Promise.resolve(undefined);
    },
    write: (item) => {
      calls.push(`write ${name(item)}`);
      return failure === undefined
        ? Promise.resolve()
        : Promise.reject(
            new KeychainError(failure, failure === "locked" ? "the Secret Service is locked" : "too long"),
          );
    },
    remove: (item) => {
      calls.push(`remove ${name(item)}`);
      return Promise.resolve(true);
    },
  };
  return { kc, calls };
}

const NEXT: TokenState = {
  version: 1,
  issuer: ISSUER,
  client_id: "nix-cache",
  mode: "user",
  refresh_token: "new-refresh-token",
};

describe("KeychainVault", () => {
  test("the sign-in check under keychain writes and removes a stand-in item, never the sign-in's own", async () => {
    const { kc, calls } = keychain();
    await new KeychainVault(context().ctx, config("keychain"), () => kc).preflightSignIn();
    assert.deepEqual(calls, [
      "write nix-cache-login:keychain-check check",
      "remove nix-cache-login:keychain-check check",
    ]);
    for (const storage of ["auto", "file"] as const) {
      const other = keychain();
      await new KeychainVault(context().ctx, config(storage), () => other.kc).preflightSignIn();
      assert.deepEqual(other.calls, [], `no keychain call under ${storage}`);
    }
  });

  test("the sign-in check under keychain: a locked keychain is keychain_locked, exit 1", async () => {
    const { kc } = keychain("locked");
    await assert.rejects(new KeychainVault(context().ctx, config("keychain"), () => kc).preflightSignIn(), {
      code: "keychain_locked",
      exitCode: 1,
      message: "the keychain cannot take the refresh token of a new sign-in: the Secret Service is locked",
    });
  });

  test("a sign-in under keychain whose write fails is refused, with nothing for the file; a renewal keeps the token in the file", async () => {
    const { kc } = keychain();
    let fail = false;
    const flaky: Keychain = {
      ...kc,
      write: (item, secret) =>
        fail
          ? Promise.reject(new KeychainError("locked", "the Secret Service is locked"))
          : kc.write(item, secret),
    };
    const signIn = new KeychainVault(context().ctx, config("keychain"), () => flaky);
    await signIn.preflightSignIn();
    fail = true;
    const e: unknown = await signIn.stash(NEXT).then(
      () => assert.fail("stored"),
      (err: unknown) => err,
    );
    assert.equal((e as { code?: string }).code, "keychain_locked");
    assert.equal(signIn.refusedSignIn(e), true);
    assert.equal(signIn.refusedSignIn(new Error("other")), false);

    const { ctx, stderr } = context();
    const renewal = new KeychainVault(ctx, config("keychain"), () => keychain("locked").kc);
    const kept = await renewal.stash(NEXT);
    assert.equal(kept.file.refresh_token, "new-refresh-token");
    assert.equal(kept.file.refresh_token_file_reason, "the Secret Service is locked");
    assert.match(stderr(), /kept it in the state file this time/);
  });

  test("a sign-in's token too long for the keychain tool is kept in the file (refusing it would fail every sign-in)", async () => {
    const { kc } = keychain();
    const vault = new KeychainVault(context().ctx, config("keychain"), () => ({
      ...kc,
      write: (item, secret) =>
        item.issuer === ISSUER
          ? Promise.reject(new KeychainError("too_large", "too long"))
          : kc.write(item, secret),
    }));
    await vault.preflightSignIn();
    const kept = await vault.stash(NEXT);
    assert.equal(kept.file.refresh_token, "new-refresh-token");
    assert.equal(kept.file.refresh_token_file_reason, "too long");
  });
});
