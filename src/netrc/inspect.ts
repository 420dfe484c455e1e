import { sha256 } from "../store/state.ts";
import { readNetrc } from "./file.ts";
import { findEntry, type NetrcEntry } from "./netrc.ts";

/** The entry curl would pick for host (a `default` counts), or undefined; null when no netrc. */
export async function entryFor(path: string, host: string): Promise<NetrcEntry | undefined | null> {
  const netrc = await readNetrc(path);
  if (netrc === null) return null;
  return findEntry(netrc, host);
}

export async function netrcHoldsToken(
  path: string,
  host: string,
  tokenSha256: string | undefined,
): Promise<boolean> {
  if (tokenSha256 === undefined) return false;
  const entry = await entryFor(path, host);
  return entry?.kind === "machine" && entry.password !== undefined && sha256(entry.password) === tokenSha256;
}
