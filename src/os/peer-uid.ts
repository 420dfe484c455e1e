/**
 * Which local user owns the other end of a loopback TCP connection (Linux). Every local user can
 * connect to 127.0.0.1, so the sign-in server asks who is calling: the kernel lists each TCP
 * socket of this network namespace, with the uid that created it, in /proc/net/tcp and
 * /proc/net/tcp6 (readable by everyone; the identd-style peer check). The client's socket is the
 * one whose local address is the connection's remote end and whose remote address is our end.
 *
 * Elsewhere (macOS, the BSDs) there is no such table for an unprivileged process: the caller gets
 * "unsupported", and the threat model (docs) says what remains.
 */
import { readFileSync } from "node:fs";
import { endianness } from "node:os";

/**
 * The peer's uid; "unsupported" where there is no table (not Linux); "unreadable" when Linux's
 * tables cannot be read; "not-found" when no socket of the tables is the peer.
 */
export type PeerOwner = { uid: number } | "unsupported" | "unreadable" | "not-found";

const TABLES = ["/proc/net/tcp", "/proc/net/tcp6"];

/** /proc prints an IPv4 address as the 32-bit word in host byte order, in hex. */
function ipv4Hex(address: string): string | undefined {
  const parts = address.split(".").map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) return undefined;
  const bytes = endianness() === "LE" ? [...parts].reverse() : parts;
  return bytes
    .map((b) => b.toString(16).padStart(2, "0"))
    .join("")
    .toUpperCase();
}

/** The forms an IPv4 address takes in the tables: itself (tcp), or v4-mapped (tcp6). */
function addressForms(address: string): string[] {
  const v4 = ipv4Hex(address.replace(/^::ffff:/i, ""));
  if (v4 === undefined) return [];
  // ::ffff:a.b.c.d as four 32-bit words in host order: 0, 0, 0x0000ffff, the IPv4 word.
  const mapped = `0000000000000000${endianness() === "LE" ? "FFFF0000" : "0000FFFF"}${v4}`;
  return [v4, mapped];
}

const port = (n: number) => n.toString(16).toUpperCase().padStart(4, "0");

/** TCP states (include/net/tcp_states.h): a time-wait entry shows uid 0 whoever made it. */
const TIME_WAIT = "06";
const LISTEN = "0A";

/** The uid of the socket at `remote` (the peer) connected to `local` (us). */
export function peerOwner(
  remote: { address: string; port: number },
  local: { address: string; port: number },
): PeerOwner {
  if (process.platform !== "linux") return "unsupported";
  const peers = new Set(addressForms(remote.address).map((a) => `${a}:${port(remote.port)}`));
  const ours = new Set(addressForms(local.address).map((a) => `${a}:${port(local.port)}`));
  if (peers.size === 0 || ours.size === 0) return "not-found";
  let read = false;
  for (const table of TABLES) {
    let text: string;
    try {
      text = readFileSync(table, "latin1");
    } catch {
      continue;
    }
    read = true;
    // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] === TIME_WAIT || f[3] === LISTEN) continue;
      if (!peers.has(f[1] ?? "") || !ours.has(f[2] ?? "")) continue;
      const uid = Number(f[7]);
      if (Number.isInteger(uid)) return { uid };
    }
  }
  return read ? "not-found" : "unreadable";
}
