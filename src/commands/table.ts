/**
 * The commands added for everyday use outside Nix (timer, init, completion), as entries of the
 * command table in ../cli.ts: their options, help and the cold command each runs.
 */
import type { CommandSpec, OptionSpec } from "../cli.ts";
import type { ColdCommand } from "../cold.ts";

export interface CommandTable {
  name: string;
  version: string;
  commands: CommandSpec[];
  globals: OptionSpec[];
  /** The help's closing text (configuration and exit codes). */
  footer: string;
}

const QUIET: OptionSpec = { name: "quiet", short: "q", help: "print nothing on success" };

export const EXTRA_COMMANDS: CommandSpec[] = [
  {
    name: "init",
    help: "write a configuration file, after checking that the issuer answers with its discovery document",
    options: [
      {
        name: "issuer",
        value: "url",
        help: "the OpenID Connect issuer, e.g. https://sso.example.org/realms/nix",
      },
      { name: "client-id", value: "id", help: "the client registered for nix-cache-login" },
      {
        name: "cache-host",
        value: "host",
        help: "the binary cache's host name, e.g. cache.example.org (several: comma-separated)",
      },
      {
        name: "client-secret-file",
        value: "path",
        help: "a file with the client secret: a service-account configuration",
      },
      {
        name: "netrc-path",
        value: "path",
        help: "the netrc to write the token to (default: $XDG_CONFIG_HOME/nix/netrc)",
      },
      { name: "force", help: "replace an existing configuration file" },
      QUIET,
    ],
    examples: [
      "nix-cache-login init --issuer https://sso.example.org/realms/nix \\",
      "    --client-id nix-cache --cache-host cache.example.org",
    ],
  },
  {
    name: "timer",
    help: "install, remove or show a timer that runs `refresh --min-valid` (systemd user units, or launchd on macOS)",
    args: { name: "action", choices: ["install", "remove", "status"], required: true },
    options: [
      {
        name: "interval",
        value: "duration",
        help: "run every this long (default: 2m; must divide a minute, an hour or a day)",
      },
      {
        name: "min-valid",
        value: "duration",
        help: "renew when the token expires within this time (default: 4m; longer than the interval)",
      },
      {
        name: "system",
        help: "as root: system units that run `service-account` for a server (config in /etc/nix-cache-login)",
      },
      QUIET,
    ],
    examples: [
      "nix-cache-login timer install",
      "nix-cache-login timer status",
      "nix-cache-login timer remove",
    ],
  },
  {
    name: "completion",
    help: "print a shell completion script (bash, zsh or fish)",
    args: { name: "shell", choices: ["bash", "zsh", "fish"], required: true },
    options: [],
    examples: [
      "nix-cache-login completion bash > ~/.local/share/bash-completion/completions/nix-cache-login",
      "nix-cache-login completion fish > ~/.config/fish/completions/nix-cache-login.fish",
    ],
  },
];

type Values = Record<string, string | boolean | undefined>;
const str = (v: string | boolean | undefined) => (typeof v === "string" ? v : undefined);

export function extraColdCommand(command: string, v: Values, table: CommandTable): ColdCommand | undefined {
  switch (command) {
    case "init":
      return {
        name: "init",
        opts: {
          issuer: str(v.issuer),
          clientId: str(v["client-id"]),
          cacheHost: str(v["cache-host"]),
          clientSecretFile: str(v["client-secret-file"]),
          netrcPath: str(v["netrc-path"]),
          force: v.force === true,
        },
      };
    case "timer":
      return {
        name: "timer",
        opts: {
          action: str(v[""]) as "install" | "remove" | "status",
          interval: str(v.interval),
          minValid: str(v["min-valid"]),
          system: v.system === true,
        },
      };
    case "completion":
      return { name: "completion", shell: str(v[""]) as "bash" | "zsh" | "fish", table };
  }
  return undefined;
}
