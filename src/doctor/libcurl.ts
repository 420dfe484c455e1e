/**
 * The libcurl Nix downloads with: which version, and whether it reads the netrc the way the token
 * needs (versions with netrc bugs are named).
 */
import { readFile, realpath, stat } from "node:fs/promises";
import type { Env } from "../os/env.ts";
import { findOnPath, runProgram } from "./nix-facts.ts";
import { check, type Check } from "./report.ts";

export interface LibcurlFacts {
  /** The library file Nix loads, when it could be found. */
  path: string | undefined;
  version: string | undefined;
  /** How the version was found: from the Nix store path's name, or the library's own text. */
  from: "store path" | "library" | undefined;
  error: string | undefined;
}

/** Reads at most this much of a library file when looking for its version string. */
const LIBRARY_READ_LIMIT = 16 * 1024 * 1024;

/**
 * The libcurl that the `nix` binary loads: the dynamic loader's answer (`ldd` on Linux,
 * `otool -L` on macOS), then the version from the store path (`/nix/store/HASH-curl-8.11.0/...`)
 * or, for a system library, the `libcurl/X.Y.Z` string that curl builds into itself.
 */
export async function gatherLibcurlFacts(
  nixPath: string,
  env: Env,
  signal: AbortSignal,
): Promise<LibcurlFacts> {
  let binary: string;
  try {
    binary = await realpath(nixPath);
  } catch {
    binary = nixPath;
  }
  const darwin = process.platform === "darwin";
  const tool = await findOnPath(darwin ? "otool" : "ldd", env);
  if (tool === undefined) {
    return {
      path: undefined,
      version: undefined,
      from: undefined,
      error: `${darwin ? "otool" : "ldd"} is not on PATH`,
    };
  }
  const r = await runProgram(tool, darwin ? ["-L", binary] : [binary], env, signal);
  const line = r.stdout.split("\n").find((l) => /libcurl/.test(l));
  if (r.code !== 0 || line === undefined) {
    return {
      path: undefined,
      version: undefined,
      from: undefined,
      error:
        r.code !== 0
          ? `\`${tool} ${binary}\` failed`
          : `${binary} does not load a shared libcurl (a static build?)`,
    };
  }
  const path = (darwin ? /^\s*(\S+)/.exec(line)?.[1] : /=>\s*(\S+)/.exec(line)?.[1]) ?? undefined;
  return libcurlVersionOf(path);
}

export async function libcurlVersionOf(path: string | undefined): Promise<LibcurlFacts> {
  if (path === undefined) return { path, version: undefined, from: undefined, error: "no library path" };
  const store = /\/nix\/store\/[0-9a-z]{32}-curl-(\d+\.\d+(?:\.\d+)?)(?:-[a-z]+)?\//.exec(path);
  if (store !== null) return { path, version: store[1], from: "store path", error: undefined };
  try {
    const real = await realpath(path);
    const st = await stat(real);
    if (!st.isFile() || st.size > LIBRARY_READ_LIMIT) throw new Error("not a library file");
    const m = /libcurl\/(\d+\.\d+\.\d+)/.exec((await readFile(real)).toString("latin1"));
    if (m !== null) return { path, version: m[1], from: "library", error: undefined };
    return { path, version: undefined, from: undefined, error: `no version string in ${path}` };
  } catch (e) {
    return { path, version: undefined, from: undefined, error: `${path}: ${(e as Error).message}` };
  }
}

function versionParts(v: string): number[] {
  return v.split(".").map((x) => Number(x));
}

/** -1, 0 or 1 as a is older than, the same as or newer than b. */
export function compareVersions(a: string, b: string): number {
  const pa = versionParts(a);
  const pb = versionParts(b);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  return 0;
}

/**
 * What the libcurl version means for a token in a netrc (curl lib/netrc.c): up to 8.10 a line may
 * be 4095 bytes (a longer one is not read); 8.11.0 capped every token at 127 bytes, so no
 * JWT gets through (fixed in 8.11.1); since 8.11.1 a token may be 4095 bytes.
 */
export function libcurlCheck(facts: LibcurlFacts): Check {
  const title = "nix libcurl";
  if (facts.version === undefined) {
    return check(
      "nix_libcurl",
      title,
      "note",
      `could not tell which libcurl Nix uses: ${facts.error ?? "unknown"}`,
    );
  }
  const v = facts.version;
  const where = `${facts.path ?? "libcurl"} (version from the ${facts.from ?? "library"})`;
  if (v === "8.11.0") {
    return check(
      "nix_libcurl",
      title,
      "problem",
      `Nix uses libcurl 8.11.0, which ignores netrc tokens longer than 127 bytes: every access token (a JWT) is dropped and Nix sends no credentials`,
      {
        details: [where],
        fix: ["update Nix to one built with curl 8.11.1 or newer (or older than 8.11.0)"],
      },
    );
  }
  const limit =
    compareVersions(v, "8.11.0") < 0
      ? "netrc lines up to 4095 bytes (a longer line is not read)"
      : "netrc tokens up to 4095 bytes, lines up to 16383";
  return check("nix_libcurl", title, "ok", `Nix uses libcurl ${v}: ${limit}`, { details: [where] });
}
