/**
 * The man page, nix-cache-login(1), made from the command table (./table.ts) by the build
 * (scripts/build.mjs writes dist/man/nix-cache-login.1): the same commands, options and text as
 * --help.
 */
import type { CommandTable, OptionSpec } from "./spec.ts";

/** roff text: a leading dot or quote would be a request, a backslash an escape, a hyphen a minus. */
function esc(text: string): string {
  return text
    .replace(/\\/g, "\\e")
    .replace(/-/g, "\\-")
    .replace(/^([.'])/gm, "\\&$1");
}

function option(o: OptionSpec): string {
  const names = [
    ...(o.short === undefined ? [] : [`\\fB\\-${o.short}\\fR`]),
    `\\fB${esc(`--${o.name}`)}\\fR`,
  ];
  const value = o.value === undefined ? "" : ` \\fI${esc(o.value)}\\fR`;
  return `.TP\n${names.join(", ")}${value}\n${esc(o.help)}\n`;
}

/** `footer`: the help's closing text (configuration and exit codes), from ./help.ts. */
export function manPage(t: CommandTable, footer: string, date: string): string {
  const up = t.name.toUpperCase();
  const out = [
    `.\\" Generated from the command table in src/cli/table.ts by scripts/build.mjs; do not edit.`,
    `.TH ${up} 1 "${date}" "${t.name} ${esc(t.version)}" "User Commands"`,
    ".SH NAME",
    `${t.name} \\- keep an OpenID Connect access token for a protected Nix binary cache in your netrc`,
    ".SH SYNOPSIS",
    `.B ${t.name}`,
    "[\\fICOMMAND\\fR] [\\fIOPTIONS\\fR]",
    ".SH DESCRIPTION",
    "Signs in at an OpenID Connect provider (such as Keycloak) and writes the access token as the password of the binary cache host's entry in a netrc file, where Nix and curl find it. A timer keeps the token fresh with \\fBrefresh\\fR.",
    ".SH COMMANDS",
  ];
  for (const c of t.commands) {
    const args = c.args === undefined ? "" : ` ${c.args.choices.map((x) => `\\fB${x}\\fR`).join("|")}`;
    out.push(".SS", `\\fB${c.name}\\fR${args}${c.options.length > 0 ? " [\\fIOPTIONS\\fR]" : ""}`);
    out.push(`${esc(c.help.charAt(0).toUpperCase() + c.help.slice(1))}.`);
    if (c.details !== undefined) out.push(".PP", esc(c.details), ".PP");
    out.push(...c.options.map((o) => option(o).trimEnd()));
    if (c.examples !== undefined) {
      out.push(".PP", "Examples:", ".RS 4", ".nf", ...c.examples.map(esc), ".fi", ".RE");
    }
  }
  out.push(".SH OPTIONS", ...t.globals.map((o) => option(o).trimEnd()));
  // The help's footer: configuration search order, keys and exit codes.
  out.push(".SH FILES AND EXIT STATUS", ".nf", esc(footer.trimEnd()), ".fi");
  out.push(
    ".SH SEE ALSO",
    "\\fBnix.conf\\fR(5), \\fBcurl\\fR(1), \\fBsystemd.timer\\fR(5), \\fBlaunchd.plist\\fR(5); the README and docs/ of the source tree, also in the npm package (docs/commands.md, docs/troubleshooting.md)",
  );
  return `${out.join("\n")}\n`;
}
