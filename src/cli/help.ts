/** `--help` text, made from the command table; built only when asked for. */
import { CONFIG_KEYS } from "../config/rules.ts";
import type { OptionSpec } from "./spec.ts";
import { COMMANDS, findCommand, GLOBAL_OPTIONS, NAME } from "./table.ts";

export const helpFooter = (): string => `Configuration (TOML), first found wins:
  --config PATH, $NIX_CACHE_LOGIN_CONFIG,
  $XDG_CONFIG_HOME/nix-cache-login/config.toml (~/.config when unset),
  /etc/nix-cache-login/config.toml
Keys: ${column(CONFIG_KEYS.join(", "), 6)}
  (issuer, client_id and cache_host are required; cache_host may be a list of hosts, each
  getting the token; client_secret_file or client_key_file means service-account mode;
  token_endpoint_auth_method: client_secret_basic (default), client_secret_post, or
  private_key_jwt with client_key_file)
Durations (timeout, default_token_lifetime, --timeout, --min-valid, --interval): a whole
  number with a unit, s, m, h or d, parts may follow one another (30s, 10m, 1h30m, 2d);
  a bare number is refused, in the file and on the command line alike
Example (\`${NAME} init --issuer URL --client-id ID --cache-host HOST\` writes one):
  issuer = "https://sso.example.org/realms/nix"
  client_id = "nix-cache"
  cache_host = "cache.example.org"

Exit codes:
  0    success (status: the access token is valid and in the netrc)
  1    failure talking to the provider, the cache or the file system
       (doctor: at least one check found a problem)
  2    usage or configuration error
  3    login required: not signed in, session expired or revoked
  130  interrupted

More: docs/commands.md, docs/configuration.md and docs/troubleshooting.md (in the source
  tree and in the npm package)
`;

/** Word-wraps `text` into a column starting at `indent`, lines at most `width` wide. */
function column(text: string, indent: number, width = 100): string {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line !== "" && indent + line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line === "" ? word : `${line} ${word}`;
  }
  lines.push(line);
  return lines.join(`\n${" ".repeat(indent)}`);
}

function table(rows: [string, string][]): string {
  const width = Math.max(...rows.map(([left]) => left.length)) + 2;
  return rows.map(([left, right]) => `  ${left.padEnd(width)}${column(right, width + 2)}\n`).join("");
}

function optionRows(options: OptionSpec[]): [string, string][] {
  return options.map((o) => [
    `${o.short === undefined ? "" : `-${o.short}, `}--${o.name}${o.value === undefined ? "" : ` <${o.value}>`}`,
    o.help,
  ]);
}

export function helpText(command?: string): string {
  const spec = findCommand(command);
  if (spec === undefined) {
    return [
      `Usage: ${NAME} [COMMAND] [OPTIONS]\n\n`,
      "Keep an OpenID Connect access token for a protected Nix binary cache in your netrc.\n\n",
      "Commands:\n",
      table(COMMANDS.map((c) => [c.name, c.help])),
      "\nOptions:\n",
      table(optionRows(GLOBAL_OPTIONS)),
      "\n",
      helpFooter(),
    ].join("");
  }
  const args = spec.args === undefined ? "" : ` ${spec.args.choices.join("|")}`;
  return [
    `Usage: ${NAME} ${spec.name}${args}${spec.options.length > 0 ? " [OPTIONS]" : ""}\n\n`,
    `${column(`${spec.help.charAt(0).toUpperCase()}${spec.help.slice(1)}.`, 0)}\n\n`,
    spec.details === undefined ? "" : `${column(spec.details, 0)}\n\n`,
    "Options:\n",
    table(optionRows([...spec.options, ...GLOBAL_OPTIONS])),
    spec.examples === undefined ? "" : `\nExamples:\n${spec.examples.map((e) => `  ${e}\n`).join("")}`,
  ].join("");
}
