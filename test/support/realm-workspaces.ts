/**
 * Workspaces configured for the test realm (or the hostile provider), shared by the end-to-end
 * files: a user (public client) or a service account (its secret in a 0600 file), and a session
 * seeded as `login` stores one.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { StateStore } from "../../src/store/state.ts";
import { writeState } from "../../src/store/write.ts";
import { makeWorkspace, type Workspace } from "./cli.ts";
import type { Realm } from "./realm.ts";

/** A workspace whose config names the realm's public client and `host`, plus `extra` keys. */
export async function realmUserWorkspace(
  realm: Realm,
  host: string,
  extra: Record<string, unknown> = {},
): Promise<Workspace> {
  const ws = await makeWorkspace();
  await ws.writeConfig({ issuer: realm.issuer, client_id: realm.publicClientId, cache_host: host, ...extra });
  return ws;
}

/** A service-account workspace; `secret` (the realm's by default) is what its secret file holds. */
export async function realmServiceWorkspace(
  realm: Realm,
  host: string,
  o: { secret?: string; extra?: Record<string, unknown> } = {},
): Promise<Workspace> {
  const ws = await makeWorkspace();
  const secret = o.secret ?? realm.serviceClientSecret;
  const secretFile = join(ws.dir, "client-secret");
  await writeFile(secretFile, `${secret}\n`, { mode: 0o600 });
  ws.secrets.add(secret);
  ws.secrets.add(realm.serviceClientSecret);
  await ws.writeConfig({
    issuer: realm.issuer,
    client_id: realm.serviceClientId,
    cache_host: host,
    client_secret_file: secretFile,
    ...o.extra,
  });
  return ws;
}

/**
 * A session seeded at the realm (through its models, no browser), its refresh token and account
 * (the ID token's `sub`, and `preferred_username` or `username`) stored in the workspace's token
 * state as `login` stores them. Returns the refresh token.
 */
export async function seedSession(
  ws: Workspace,
  realm: Realm,
  o: { username?: string } = {},
): Promise<string> {
  const tokens = await realm.signIn();
  const refreshToken = tokens.refresh_token as string;
  ws.secrets.add(refreshToken);
  ws.secrets.add(tokens.access_token as string);
  const store = new StateStore(ws.stateDir, realm.issuer, realm.publicClientId);
  await mkdir(ws.stateDir, { recursive: true, mode: 0o700 });
  const claims = JSON.parse(
    Buffer.from(tokens.id_token.split(".")[1] ?? "", "base64url").toString("utf8"),
  ) as { sub: string; preferred_username?: string };
  await writeState(store, {
    ...store.empty("user"),
    refresh_token: refreshToken,
    subject: claims.sub,
    username: o.username ?? claims.preferred_username ?? claims.sub,
  });
  return refreshToken;
}

/** The hostile provider takes any client secret: this one, so that the scan finds it in output. */
export const HOSTILE_CLIENT_SECRET = "the-client-secret-42";

/**
 * A workspace for the hostile provider at `issuer` (test/support/hostile-provider.ts): the user
 * client nix-cache, or the service account nix-cache-server with its secret in a 0600 file; then
 * `config`'s keys.
 */
export async function hostileWorkspace(
  issuer: string,
  mode: "service" | "user",
  config: Record<string, unknown>,
): Promise<Workspace> {
  const ws = await makeWorkspace();
  const base: Record<string, unknown> = {
    issuer,
    client_id: mode === "service" ? "nix-cache-server" : "nix-cache",
  };
  if (mode === "service") {
    const secretFile = join(ws.dir, "client-secret");
    await writeFile(secretFile, `${HOSTILE_CLIENT_SECRET}\n`, { mode: 0o600 });
    ws.secrets.add(HOSTILE_CLIENT_SECRET);
    base.client_secret_file = secretFile;
  }
  await ws.writeConfig({ ...base, ...config });
  return ws;
}
