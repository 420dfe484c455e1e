import { formatMode, resolveTarget, withLock, writeFileAtomic } from "../atomic-file.ts";
import { CliError } from "../errors.ts";
import { fileError } from "../fs-errors.ts";
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
async function editNetrc(
  path: string,
  edit: (text: string | null) => string | null,
  where = "netrc_path",
): Promise<EditResult> {
  let target: string;
  try {
    target = await resolveTarget(path);
  } catch (e) {
    throw fileError(path, "follow the symlink", e, where);
  }
  // Home Manager links the netrc into the read-only Nix store: say so, the path alone hides it.
  const key = target === path ? where : `${where}: ${path} is a symlink to ${target}`;
  return withLock(
    target,
    async () => {
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
        modes = await writeFileAtomic(target, updated, "latin1", key);
      } catch (e) {
        fsError(target, "write the netrc", e);
      }
      const { mode, previousMode } = modes;
      const warning =
        previousMode !== undefined && previousMode !== mode
          ? `${target}: mode tightened from ${formatMode(previousMode)} to ${formatMode(mode)} because it holds a token`
          : undefined;
      return { changed: true, warning };
    },
    { where: key },
  );
}

/** Writes (or replaces) the host's entry. Returns a warning when the file's mode was tightened. */
export async function upsertNetrcEntry(
  path: string,
  host: string,
  token: string,
  where?: string,
): Promise<string | undefined> {
  checkTokenLength(token, host);
  const { warning } = await editNetrc(
    path,
    (text) => upsertEntry(text ?? "", host, NETRC_LOGIN, token),
    where,
  );
  return warning;
}

/** Removes only the host's entries; returns whether anything was removed. */
export async function removeNetrcEntry(path: string, host: string, where?: string): Promise<boolean> {
  const { changed } = await editNetrc(
    path,
    (text) => (text === null ? null : removeEntries(text, host)),
    where,
  );
  return changed;
}
