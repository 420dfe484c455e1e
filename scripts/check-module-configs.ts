/**
 * The built CLI's own validation of every config file the Nix module checks generate
 * (nix/ci-check.sh --modules runs this): each value, written as TOML, must be accepted by
 * `nix-cache-login status --config FILE --json` in the mode the module meant (a workstation config
 * reads as a user sign-in, a server's as a service account).
 *
 *   node --import tsx scripts/check-module-configs.ts CONFIGS.json
 *
 * CONFIGS.json: [{ "name": ..., "mode": "user" | "service-account", "value": { ...TOML data } }],
 * as `nix-instantiate --eval --strict --json -A cliConfigs` prints it. `status` reads only local
 * files: with empty HOME and XDG directories it finds no token and exits 3; a config it refuses
 * exits 2 with the CLI's message, which is printed.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { stringify } from "smol-toml";

interface ModuleConfig {
  name: string;
  mode: "user" | "service-account";
  value: Record<string, unknown>;
}

const cli = resolve(import.meta.dirname, "../dist/nix-cache-login.cjs");
const [input] = process.argv.slice(2);
if (input === undefined) {
  console.error("usage: check-module-configs.ts CONFIGS.json");
  process.exit(2);
}
if (!existsSync(cli)) {
  console.log(`FAIL ${cli} not found: run \`npm run build\` first`);
  process.exit(1);
}
const configs = JSON.parse(readFileSync(input, "utf8")) as ModuleConfig[];
if (!Array.isArray(configs) || configs.length === 0) {
  console.log(`FAIL ${input}: no config values to check`);
  process.exit(1);
}

const work = mkdtempSync(join(tmpdir(), "ncl-module-configs-"));
let failed = 0;
try {
  configs.forEach((c, i) => {
    const file = join(work, `config-${i}.toml`);
    writeFileSync(file, stringify(c.value), { mode: 0o600 });
    const home = join(work, `home-${i}`);
    const run = spawnSync(process.execPath, [cli, "status", "--config", file, "--json"], {
      encoding: "utf8",
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        HOME: home,
        XDG_CONFIG_HOME: join(home, ".config"),
        XDG_STATE_HOME: join(home, ".local/state"),
        XDG_CACHE_HOME: join(home, ".cache"),
      },
    });
    let mode: unknown;
    let path: unknown;
    try {
      ({ mode, config_path: path } = JSON.parse(run.stdout) as { mode?: unknown; config_path?: unknown });
    } catch {
      // Not JSON: reported below with the CLI's stderr.
    }
    if (run.status === 3 && path === file && mode === c.mode) {
      console.log(`ok   the CLI accepts ${c.name} (${c.mode})`);
    } else {
      failed++;
      console.log(
        `FAIL the CLI refuses ${c.name}: exit ${run.status}, mode ${String(mode)} (want ${c.mode})`,
      );
      for (const line of `${run.stderr}${stringify(c.value)}`.trimEnd().split("\n"))
        console.log(`       ${line}`);
    }
  });
} finally {
  rmSync(work, { recursive: true, force: true });
}
console.log(`${configs.length - failed}/${configs.length} generated configs accepted by the CLI`);
process.exit(failed === 0 ? 0 : 1);
