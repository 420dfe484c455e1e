/**
 * Which boot of this machine we run in, and how long since it started: lock records compare the
 * boot (a lock from an earlier boot is stale), the provider's clock (../core/provider-clock.ts)
 * counts time since boot, which no clock setting moves. Loaded by `status`: no node:crypto here.
 */
import { readFileSync } from "node:fs";

let bootIdCache: string | undefined;
/**
 * Which boot of this machine we run in: Linux's boot id, else the BSD/macOS boot time in seconds
 * (`kern.boottime`, exact, unlike now - uptime). "" when unknown: then the boot is not compared.
 */
export function bootId(): string {
  if (bootIdCache !== undefined) return bootIdCache;
  try {
    bootIdCache = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  } catch {
    try {
      const { execFileSync } = process.getBuiltinModule("node:child_process");
      const out = execFileSync("sysctl", ["-n", "kern.boottime"], { encoding: "utf8", timeout: 2000 });
      const sec = /sec = (\d+)/.exec(out)?.[1];
      bootIdCache = sec === undefined ? "" : `boottime-${sec}`;
    } catch {
      bootIdCache = "";
    }
  }
  return bootIdCache;
}

/** Milliseconds since boot, suspend included (Linux's /proc/uptime); undefined elsewhere. */
export function uptimeMs(): number | undefined {
  try {
    const seconds = Number(readFileSync("/proc/uptime", "utf8").split(" ")[0]);
    return Number.isFinite(seconds) && seconds >= 0 ? Math.round(seconds * 1000) : undefined;
  } catch {
    return undefined;
  }
}
