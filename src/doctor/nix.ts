/**
 * Doctor checks on Nix: is it installed, which netrc file does it read, and the two setups where
 * the answer is not simply `netrc-file` in the user's nix.conf: Determinate Nix (its daemon merges
 * `authentication.additionalNetrcSources` into its own netrc, reading them only when it starts) and
 * multi-user installs (the daemon downloads, with the daemon's `netrc-file`; a user's own setting
 * counts only for trusted users). Facts: ../../TESTBED.md, "netrc as curl and Nix read it".
 *
 * Gathering facts (running `nix`, reading files: ./nix-facts.ts) is kept apart from judging them,
 * so the verdicts can be tested for setups this machine does not have. Here: Nix's own settings;
 * ./determinate.ts, ./daemon.ts and ./libcurl.ts judge the rest.
 */
import { join } from "node:path";
import type { Env } from "../os/env.ts";
import { xdgDir } from "../config/paths.ts";
import { daemonRestart, samePath, SYSTEM_NIX_CONF, type NixFacts } from "./nix-facts.ts";
import { check, type Check } from "./report.ts";

/** The nix.conf a fix should go to: the daemon's for multi-user installs, else the user's. */
export function nixConfTarget(facts: Pick<NixFacts, "multiUser">, env: Env): string {
  if (facts.multiUser) return SYSTEM_NIX_CONF;
  const dir = env.NIX_CONF_DIR;
  if (dir !== undefined && dir !== "") return join(dir, "nix.conf");
  try {
    return join(xdgDir(env, "XDG_CONFIG_HOME"), "nix", "nix.conf");
  } catch {
    return "~/.config/nix/nix.conf";
  }
}

export function nixConfLine(netrcPath: string): string {
  return `netrc-file = ${netrcPath}`;
}

export function nixosLine(netrcPath: string): string {
  return `nix.settings.netrc-file = "${netrcPath}";`;
}

export function nixSummaryCheck(facts: NixFacts): Check {
  const kind = facts.determinate ? "Determinate Nix" : "upstream Nix";
  const install = facts.multiUser
    ? "multi-user (a daemon downloads)"
    : `single-user${facts.store !== undefined ? ` (store ${facts.store})` : ""}`;
  return check("nix", "nix", "ok", `${facts.path}: ${facts.version}; ${kind}, ${install}`, {
    details: facts.settingsCommand !== undefined ? [`settings read with \`${facts.settingsCommand}\``] : [],
  });
}

/** Does the Nix the user runs read netrc_path? */
export async function nixNetrcFileCheck(facts: NixFacts, netrcPath: string, env: Env): Promise<Check> {
  const title = "nix netrc-file";
  if (facts.netrcFile === undefined) {
    return check(
      "nix_netrc_file",
      title,
      "problem",
      `could not read Nix's settings: ${facts.settingsError ?? "no netrc-file"}`,
      {
        fix: [`make sure \`nix show-config\` (or \`nix config show\`) works, then run doctor again`],
      },
    );
  }
  if (await samePath(facts.netrcFile, netrcPath)) {
    return check(
      "nix_netrc_file",
      title,
      "ok",
      `Nix reads ${facts.netrcFile}, the netrc_path of the configuration`,
    );
  }
  if (facts.determinate) {
    // Determinate Nixd owns netrc-file and merges additionalNetrcSources into it: see that check.
    return check(
      "nix_netrc_file",
      title,
      "note",
      `Nix reads ${facts.netrcFile}; Determinate Nix fills it from authentication.additionalNetrcSources (see determinate)`,
    );
  }
  const target = nixConfTarget(facts, env);
  const fromEnv = /(^|\n)\s*netrc-file\s*=/.test(env.NIX_CONFIG ?? "");
  return check("nix_netrc_file", title, "problem", `Nix reads ${facts.netrcFile}, not ${netrcPath}`, {
    details: [
      ...(fromEnv ? ["$NIX_CONFIG sets netrc-file, and it overrides every nix.conf"] : []),
      ...(facts.multiUser ? [`then restart the daemon: \`${daemonRestart(facts)}\``] : []),
    ],
    fix: [`add this line to ${target}:  ${nixConfLine(netrcPath)}`, `on NixOS:  ${nixosLine(netrcPath)}`],
  });
}
