import { dirname } from "node:path";
import { ensureDir, withLock, writeFileAtomic } from "../fs/atomic-file.ts";
import { CliError } from "../errors.ts";
import { formatMode } from "../fs/file-trust.ts";
import { fsError, readNetrcText, syntaxError } from "./read.ts";
import { trustedNetrcTarget } from "./trust.ts";

export { trustedNetrcTarget };
import {
  CURL_NETRC_MAX_LINE,
  CURL_NETRC_MAX_TOKEN,
  parseNetrc,
  passwordLineBytes,
  removeEntries,
  upsertEntry,
} from "./netrc.ts";

/**
 * The login curl sends with the token. Its value does not matter to the cache, but it must not be
 * empty: password-only entries broke in curl 7.82-7.84 and 8.11.1.
 */
export const NETRC_LOGIN = "nix-cache-login";

/** RFC 6750 section 2.1: the characters of a Bearer token, `b64token`. */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

/**
 * Only a token of RFC 6750 `b64token` characters is written: one that could not be sent as a
 * Bearer token is not a token, and anything else could break out of the netrc entry (a NUL, a
 * blank, a quote, or U+010A, which the latin1 netrc turns into a newline) and add entries of the
 * provider's choosing. Such a token never needs quoting, so every curl reads it the same way.
 */
export function checkTokenCharacters(token: string, host: string): void {
  if (B64TOKEN.test(token)) return;
  const bad = [...token].find((c) => !/[A-Za-z0-9\-._~+/=]/.test(c));
  const what =
    token === ""
      ? "is empty"
      : bad === undefined
        ? "has `=` before its end"
        : `contains ${describeChar(bad)}`;
  throw new CliError(
    "token_malformed",
    `the access token from the provider for ${host} ${what}, which is not allowed in a Bearer token (RFC 6750 b64token); nothing was written`,
    { hint: "the provider sent a malformed token: report it to its administrators" },
  );
}

function describeChar(c: string): string {
  const code = c.codePointAt(0) ?? 0;
  const hex = `U+${code.toString(16).toUpperCase().padStart(4, "0")}`;
  return code > 0x20 && code < 0x7f ? `the character ${JSON.stringify(c)} (${hex})` : `the character ${hex}`;
}

/** Over this, a token still fits but is worth making smaller before it grows past the limit. */
export const NETRC_TOKEN_WARN_BYTES = 3 * 1024;

/**
 * Refuses a token that curl would not read from our entry (its `password` line over curl's
 * 4095-byte line limit: curl 7.88 then skips the line and sends no password for us) or whose
 * token curl >= 8.11.1 would refuse (over 4095 bytes: it stops reading the file there), and returns a warning for one over 3 KB.
 */
export function checkTokenLength(token: string, host: string): string | undefined {
  checkTokenCharacters(token, host);
  const bytes = Buffer.byteLength(token, "utf8");
  // A CRLF netrc adds one byte to the line: count it, whichever file the entry ends up in.
  const line = passwordLineBytes(token, "\r\n");
  const cure =
    'make the access token smaller in Keycloak: turn on lightweight access tokens (client -> Advanced -> "Always use lightweight access token", Keycloak 24+), or map fewer roles and groups into it';
  if (line > CURL_NETRC_MAX_LINE || bytes > CURL_NETRC_MAX_TOKEN) {
    throw new CliError(
      "token_too_long",
      `the access token for ${host} is ${bytes} bytes; its netrc line would be ${line} bytes, and curl up to 8.10 (and the Nix built on it) skips a netrc line over ${CURL_NETRC_MAX_LINE} bytes, so Nix would send no token`,
      { hint: `${cure}; the netrc was left unchanged` },
    );
  }
  if (bytes > NETRC_TOKEN_WARN_BYTES) {
    return `the access token for ${host} is ${bytes} bytes, close to curl's netrc limit (a ${CURL_NETRC_MAX_LINE}-byte line, about ${CURL_NETRC_MAX_LINE - passwordLineBytes("", "\r\n")} bytes of token); ${cure}`;
  }
  return undefined;
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
  createdDir?: (dir: string) => void,
): Promise<EditResult> {
  const target = trustedNetrcTarget(path);
  // Home Manager links the netrc into the read-only Nix store: say so, the path alone hides it.
  const key = target === path ? where : `${where}: ${path} is a symlink to ${target}`;
  // A directory made without a word hides a typo in netrc_path: the caller says so.
  const created = await ensureDir(dirname(target), key);
  if (created !== undefined) createdDir?.(created);
  // Looked at again now that the directory exists: in a directory others can write to (a sticky
  // /tmp), the one found or made may be another user's, made between the first look and now.
  if (trustedNetrcTarget(path) !== target) fsError(path, "use the netrc", new Error("it changed meanwhile"));
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

/**
 * What writing the token would find wrong, found before a grant: the netrc's trust (the same checks
 * as the write) and its syntax. A grant the netrc then refuses would have spent a request and
 * rewritten the token state for a token that goes nowhere; this way nothing is asked or changed.
 * A missing netrc is fine (it is created); what only the write can tell (a full disk) stays there.
 */
export function checkNetrcWritable(path: string): void {
  const target = trustedNetrcTarget(path);
  const text = readNetrcText(target);
  if (text === null) return;
  try {
    parseNetrc(text);
  } catch (e) {
    syntaxError(target, e);
  }
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
  where?: string,
  createdDir?: (dir: string) => void,
): Promise<string | undefined> {
  for (const host of hosts) checkTokenLength(token, host);
  const { warning } = await editNetrc(
    path,
    (text) => hosts.reduce((t, host) => upsertEntry(t, host, NETRC_LOGIN, token), text ?? ""),
    where,
    createdDir,
  );
  return warning;
}

/** Removes only the hosts' entries, in one write; returns the hosts that had one. */
export async function removeNetrcEntries(
  path: string,
  hosts: readonly string[],
  where?: string,
): Promise<string[]> {
  const removed: string[] = [];
  await editNetrc(
    path,
    (text) => {
      if (text === null) return null;
      return hosts.reduce((t, host) => {
        const next = removeEntries(t, host);
        if (next !== t) removed.push(host);
        return next;
      }, text);
    },
    where,
  );
  return removed;
}

/** Writes (or replaces) one host's entry. Returns a warning when the file's mode was tightened. */
export function upsertNetrcEntry(
  path: string,
  host: string,
  token: string,
  where?: string,
): Promise<string | undefined> {
  return upsertNetrcEntries(path, [host], token, where);
}

/** Removes only the host's entries; returns whether anything was removed. */
export async function removeNetrcEntry(path: string, host: string, where?: string): Promise<boolean> {
  return (await removeNetrcEntries(path, [host], where)).length > 0;
}
