/** Reading the netrc, for `status` and the checks before a renewal; editing it is in ./file.ts. */
import { readFileSync } from "node:fs";
import { CliError } from "../errors.ts";
import { NetrcSyntaxError, parseNetrc, visitEntries, type Netrc, type NetrcEntry } from "./netrc.ts";
import { fsError, trustedNetrcTarget } from "./trust.ts";

export function syntaxError(path: string, e: unknown): never {
  if (e instanceof NetrcSyntaxError) {
    throw new CliError("netrc_syntax", `${path}: ${e.message}`, {
      hint: "fix the netrc by hand; nix-cache-login left it unchanged",
    });
  }
  throw e;
}

export { fsError };

/**
 * The netrc's text, or null when there is none. Read as latin1 (one char per byte), so that byte
 * counts are exact and untouched bytes are written back as they were. `utf8` is Node's fastest
 * read, for callers that only compare an ASCII token: netrc syntax is ASCII, and a multi-byte or
 * invalid sequence never turns into an ASCII character, so entries and ASCII values come out the
 * same.
 */
export function readNetrcText(path: string, encoding: "latin1" | "utf8" = "latin1"): string | null {
  try {
    return readFileSync(path, encoding);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    fsError(path, "read the netrc", e);
  }
}

/**
 * The parsed netrc, or null when there is none. Read only after the checks the write path makes
 * (./trust.ts): a netrc another user could have written must not make a token look installed.
 */
export function readNetrc(path: string, encoding: "latin1" | "utf8" = "latin1"): Netrc | null {
  const target = trustedNetrcTarget(path, "read");
  const text = readNetrcText(target, encoding);
  if (text === null) return null;
  try {
    return parseNetrc(text);
  } catch (e) {
    syntaxError(target, e);
  }
}

/**
 * Whether there is a netrc, and for each host whether curl would send `token` (ASCII, as every
 * OAuth token) there: the first entry that matches it (a `default` counts) is a `machine` entry
 * holding it. `holds` is true only when every host holds it. The whole file is checked, but only
 * the first match of each host is kept (`status` on a netrc of 100,000 entries).
 */
export function netrcHolds(
  path: string,
  hosts: readonly string[],
  token: string | undefined,
): { exists: boolean; holds: boolean; byHost: Map<string, boolean> } {
  // The same checks as every read and write (./trust.ts): a planted netrc must not make a token
  // look installed.
  const target = trustedNetrcTarget(path, "read");
  const text = readNetrcText(target, "utf8");
  const first = new Map<string, NetrcEntry>();
  const wanted = hosts.map((h) => h.toLowerCase());
  if (text !== null) {
    try {
      visitEntries(text, (e) => {
        for (const h of wanted) {
          if (!first.has(h) && (e.kind === "default" || e.machine === h)) first.set(h, e);
        }
      });
    } catch (e) {
      syntaxError(target, e);
    }
  }
  const byHost = new Map<string, boolean>();
  for (const host of hosts) {
    const entry = first.get(host.toLowerCase());
    byHost.set(host, token !== undefined && entry?.kind === "machine" && entry.password === token);
  }
  return { exists: text !== null, holds: [...byHost.values()].every(Boolean), byHost };
}
