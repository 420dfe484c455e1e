/**
 * The cost of the token for Nix: wall time of `nix-store -r` substituting one small path through
 * the protected cache (Apache + mod_auth_openidc, with the netrc the CLI wrote) next to the same
 * fetch from an unprotected Apache serving the same binary cache. Median over `runs` alternating
 * runs, each in a fresh narinfo cache, after one warm-up run of each.
 *
 * Used by scripts/bench.ts; `node --import tsx scripts/bench-nix.ts` runs it alone.
 */
import { fileURLToPath } from "node:url";
import { startProtectedCache, type ProtectedCache } from "../test/support/cache.ts";
import { runCli } from "../test/support/cli.ts";
import { nixStoreDelete, nixStoreRealise } from "../test/support/nix.ts";
import { startBed, type Bed } from "../test/support/protected-bed.ts";
import { median } from "./bench-measure.ts";

async function fetchOnce(bed: Bed, cache: ProtectedCache, netrcFile: string | undefined): Promise<number> {
  const r = await nixStoreRealise(bed.nix, bed.paths, {
    substituter: cache.url,
    ...(netrcFile ? { netrcFile } : {}),
  });
  if (r.code !== 0) throw new Error(`nix-store -r through ${cache.url} failed:\n${r.stderr}`);
  await nixStoreDelete(bed.nix, bed.paths);
  return r.durationMs;
}

export async function benchNix(
  runs = 15,
): Promise<{ protectedMs: number; unprotectedMs: number; runs: number }> {
  // A token that outlives the benchmark.
  const bed = await startBed({ accessTokenTTL: 3600 });
  let open: ProtectedCache | undefined;
  try {
    open = await startProtectedCache({ cacheDir: bed.cacheDir, protected: false });
    const ws = await bed.workspace(bed);
    const r = await runCli(ws, ["service-account"]);
    if (r.code !== 0) throw new Error(`service-account failed: ${r.stderr}`);

    await fetchOnce(bed, bed.cache, ws.netrcPath);
    await fetchOnce(bed, open, undefined);
    const prot: number[] = [];
    const unprot: number[] = [];
    for (let i = 0; i < runs; i++) {
      // Alternate, so drift (page cache, CPU frequency) hits both sides alike.
      prot.push(await fetchOnce(bed, bed.cache, ws.netrcPath));
      unprot.push(await fetchOnce(bed, open, undefined));
    }
    return { protectedMs: median(prot), unprotectedMs: median(unprot), runs };
  } finally {
    await open?.stop();
    await bed.stop();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const r = await benchNix();
  console.log(
    `nix-store -r, 1 small path, median of ${r.runs}: protected ${r.protectedMs.toFixed(1)} ms, ` +
      `unprotected ${r.unprotectedMs.toFixed(1)} ms, auth overhead ${(r.protectedMs - r.unprotectedMs).toFixed(1)} ms`,
  );
}
