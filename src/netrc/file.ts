import { formatMode, resolveTarget, withLock, writeFileAtomic } from "../atomic-file.ts";
import { CliError } from "../errors.ts";
import { fsError, readNetrcText, syntaxError } from "./read.ts";
import { CURL_NETRC_MAX_TOKEN, removeEntries, upsertEntry } from "./netrc.ts";

/**
 * The login curl sends with the token. Its value does not matter to the cache, but it must not be
 * empty: password-only entries broke in curl 7.82-7.84 and 8.11.1.
 */
export const NETRC_LOGIN = "nix-cache-login";

export function checkTokenLength(token: string, host: string): void {
  const bytes = Buffer.byteLength(token, "utf8");
  if (bytes > CURL_NETRC_MAX_TOKEN) {
    throw new CliError(
      `the access token for ${host} is ${bytes} bytes; curl ignores netrc tokens longer than ${CURL_NETRC_MAX_TOKEN} bytes and would send no credentials`,
      {
        hint: "make the token smaller in Keycloak (fewer roles/groups in the access token, or a dedicated client scope); the netrc was left unchanged",
      },
    );
  }
  if (/[\n\r]/.test(token)) throw new CliError(`the access token for ${host} contains a line break`);
}

interface EditResult {
  changed: boolean;
  /** Set when the file's mode was tightened on the way. */
  warning: string | undefined;
}

/**
 * Read -> edit -> atomic write under the netrc's sibling lock. `edit` gets the text (null when the
 * file does not exist) and returns the new text, or null to leave the file alone.
 */
async function editNetrc(path: string, edit: (text: string | null) => string | null): Promise<EditResult> {
  const target = await resolveTarget(path);
  return withLock(target, async () => {
    const text = readNetrcText(target);
    let updated: string | null;
    try {
      updated = edit(text);
    } catch (e) {
      syntaxError(target, e);
    }
    if (updated === null || updated === text) return { changed: false, warning: undefined };
    let modes: Awaited<ReturnType<typeof writeFileAtomic>>;
    try {
      modes = await writeFileAtomic(target, updated);
    } catch (e) {
      fsError(target, "write the netrc", e);
    }
    const { mode, previousMode } = modes;
    const warning =
      previousMode !== undefined && previousMode !== mode
        ? `${target}: mode tightened from ${formatMode(previousMode)} to ${formatMode(mode)} because it holds a token`
        : undefined;
    return { changed: true, warning };
  });
}

/**
 * Writes (or replaces) the entry of every host, in one atomic write under one lock: a reader never
 * sees one host with the new token and another with the old. Returns a warning when the file's
 * mode was tightened.
 */
export async function upsertNetrcEntries(
  path: string,
  hosts: readonly string[],
  token: string,
): Promise<string | undefined> {
  for (const host of hosts) checkTokenLength(token, host);
  const { warning } = await editNetrc(path, (text) =>
    hosts.reduce((t, host) => upsertEntry(t, host, NETRC_LOGIN, token), text ?? ""),
  );
  return warning;
}

/** Removes only the hosts' entries, in one write; returns the hosts that had one. */
export async function removeNetrcEntries(path: string, hosts: readonly string[]): Promise<string[]> {
  const removed: string[] = [];
  await editNetrc(path, (text) => {
    if (text === null) return null;
    return hosts.reduce((t, host) => {
      const next = removeEntries(t, host);
      if (next !== t) removed.push(host);
      return next;
    }, text);
  });
  return removed;
}

/** Writes (or replaces) one host's entry. Returns a warning when the file's mode was tightened. */
export function upsertNetrcEntry(path: string, host: string, token: string): Promise<string | undefined> {
  return upsertNetrcEntries(path, [host], token);
}

/** Removes only the host's entries; returns whether anything was removed. */
export async function removeNetrcEntry(path: string, host: string): Promise<boolean> {
  return (await removeNetrcEntries(path, [host])).length > 0;
}
