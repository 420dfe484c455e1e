import type { Context } from "../context.ts";
import { cacheCheck, cacheUnauthenticatedCheck } from "../doctor/cache.ts";
import { keychainCheck } from "../doctor/keychain.ts";
import {
  clientSecretCheck,
  configCheck,
  netrcEntryCheck,
  netrcFileCheck,
  netrcLinesCheck,
  netrcMachineCheck,
  netrcTokenCheck,
  tokenCheck,
  clockCheck,
} from "../doctor/local.ts";
import { daemonCheck, gatherDaemonFacts } from "../doctor/daemon.ts";
import {
  determinateCheck,
  determinateDaemonCheck,
  gatherDeterminateDaemonFacts,
  readDeterminateConfig,
} from "../doctor/determinate.ts";
import { findOnPath, gatherNixFacts } from "../doctor/nix-facts.ts";
import { gatherLibcurlFacts, libcurlCheck } from "../doctor/libcurl.ts";
import { nixNetrcFileCheck, nixSummaryCheck } from "../doctor/nix.ts";
import { check, problems, renderJson, renderText, type Check } from "../doctor/report.ts";
import { ExitCode } from "../errors.ts";
import { renewCommand } from "../core/freshness.ts";
import { providerTime } from "../core/provider-clock.ts";
import type { NetrcEntry } from "../netrc/netrc.ts";

export interface DoctorOptions {
  json?: boolean | undefined;
}

/**
 * Finds why Nix does not use the token. Every finding, including an invalid configuration, is a
 * reported check rather than an error: exit 0 when no check found a problem, else 1.
 */
export async function doctor(ctx: Context, opts: DoctorOptions): Promise<number> {
  const checks: Check[] = [];
  const { check: cfg, setup } = configCheck(ctx);
  checks.push(cfg);

  const entries = new Map<string, NetrcEntry | undefined>();
  let tokenExpired = true;
  let renew = "nix-cache-login login";
  if (setup !== undefined) {
    const { config } = setup;
    if (config.mode === "service-account") checks.push(clientSecretCheck(config));
    const token = tokenCheck(ctx, setup);
    checks.push(token.check);
    if (token.state !== undefined) checks.push(clockCheck(ctx, token.state));
    if (config.mode === "user") checks.push(await keychainCheck(ctx, setup, token.state));
    tokenExpired = token.expired;
    renew = renewCommand(config, token.state, providerTime(token.state, ctx.now()).now);
    const file = await netrcFileCheck(config, renew);
    checks.push(file.check);
    if (file.netrc !== null && file.netrc !== undefined) {
      for (const machine of config.machines) {
        const e = netrcEntryCheck(config, file.netrc, renew, machine);
        entries.set(machine, e.entry);
        const forHost = perHost(config.machines, machine);
        checks.push(
          forHost(e.check),
          forHost(netrcTokenCheck(file.netrc, e.entry, token.state, renew, machine)),
          forHost(netrcMachineCheck(file.netrc, machine)),
        );
      }
      checks.push(netrcLinesCheck(config, file.netrc, renew));
    } else {
      checks.push(check("netrc_entry", "netrc entry", "skipped", "no netrc to look into (see netrc file)"));
    }
  }

  const nixPath = await findOnPath("nix", ctx.env);
  if (nixPath === undefined) {
    checks.push(check("nix", "nix", "skipped", "`nix` is not on PATH: the Nix checks were skipped"));
  } else {
    const facts = await gatherNixFacts(nixPath, ctx.env, ctx.signal);
    checks.push(nixSummaryCheck(facts));
    checks.push(libcurlCheck(await gatherLibcurlFacts(nixPath, ctx.env, ctx.signal)));
    const netrcPath = setup?.config.netrcPath;
    if (netrcPath === undefined) {
      checks.push(
        check(
          "nix_netrc_file",
          "nix netrc-file",
          "skipped",
          `Nix reads ${facts.netrcFile ?? "(unknown)"}; no valid configuration to compare with`,
        ),
      );
    } else {
      checks.push(await nixNetrcFileCheck(facts, netrcPath, ctx.env));
      if (facts.determinate) {
        checks.push(await determinateCheck(await readDeterminateConfig(), netrcPath));
        checks.push(
          determinateDaemonCheck(
            await gatherDeterminateDaemonFacts(netrcPath, ctx.env, ctx.signal, ctx.now()),
            netrcPath,
          ),
        );
      }
      if (facts.multiUser && !facts.determinate) {
        checks.push(await daemonCheck(facts, await gatherDaemonFacts(ctx.env, ctx.signal), netrcPath));
      }
    }
  }

  if (setup !== undefined) {
    const { config } = setup;
    const hosts = config.cacheHosts.map((h) => h.host);
    const results = await Promise.all(
      config.cacheHosts.map(async (cache) => [
        await cacheCheck(
          ctx,
          config,
          cache,
          entries.get(entryKey(config.machines, cache.machine)),
          tokenExpired,
          renew,
        ),
        await cacheUnauthenticatedCheck(ctx, config, cache),
      ]),
    );
    results.forEach((pair, i) => checks.push(...pair.map(perHost(hosts, hosts[i] as string))));
  } else {
    checks.push(check("cache", "cache", "skipped", "no valid configuration, so no cache to ask"));
  }

  const report = { configPath: setup?.config.path ?? null, checks };
  ctx.stdout.write(opts.json === true ? renderJson(report) : renderText(report));
  return problems(report).length === 0 ? ExitCode.ok : ExitCode.failure;
}

/** With several cache hosts, each host's check says which host it is about (id and title). */
function perHost(all: readonly string[], host: string): (c: Check) => Check {
  if (all.length <= 1) return (c) => c;
  return (c) => ({ ...c, id: `${c.id}:${host}`, title: `${c.title} (${host})` });
}

/** The spelling of `machine` in config.machines (netrc names compare without case). */
function entryKey(machines: readonly string[], machine: string): string {
  return machines.find((m) => m.toLowerCase() === machine.toLowerCase()) ?? machine;
}
