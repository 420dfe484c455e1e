/**
 * Shell completion scripts for bash, zsh and fish, made from the command table (./table.ts), so
 * that they know every command, option and argument the parser knows.
 */
import type { CommandSpec, CommandTable, OptionSpec } from "./spec.ts";

type Shell = "bash" | "zsh" | "fish";

export function completionScript(shell: Shell, t: CommandTable): string {
  if (shell === "bash") return bash(t);
  if (shell === "zsh") return zsh(t);
  return fish(t);
}

const words = (options: OptionSpec[]) =>
  options.flatMap((o) => [`--${o.name}`, ...(o.short === undefined ? [] : [`-${o.short}`])]);

/** Options that take a file path: completed with file names. */
const isPath = (o: OptionSpec) => o.value === "path";

function bash(t: CommandTable): string {
  const fn = `_${t.name.replace(/-/g, "_")}`;
  const all = [...t.globals, ...t.commands.flatMap((c) => c.options)].filter((o) => o.value !== undefined);
  const valued = all.filter((o, i) => all.findIndex((x) => x.name === o.name) === i);
  const pathOpts = valued.filter(isPath).flatMap((o) => words([o]));
  const otherValued = valued.filter((o) => !isPath(o)).flatMap((o) => words([o]));
  const cases = t.commands
    .map((c) => {
      const args = c.args === undefined ? "" : `${c.args.choices.join(" ")} `;
      return `    ${c.name}) opts="${args}${words([...c.options, ...t.globals]).join(" ")}" ;;`;
    })
    .join("\n");
  return `# bash completion for ${t.name} (generated from its command table; \`${t.name} completion bash\`)
${fn}() {
  local cur prev cmd="" i opts
  cur="\${COMP_WORDS[COMP_CWORD]}"
  prev="\${COMP_WORDS[COMP_CWORD-1]}"
  case "$prev" in
    ${pathOpts.join("|")}) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    ${otherValued.join("|")}) COMPREPLY=(); return ;;
  esac
  for ((i = 1; i < COMP_CWORD; i++)); do
    case "\${COMP_WORDS[i]}" in
      ${t.commands.map((c) => c.name).join("|")}) cmd="\${COMP_WORDS[i]}"; break ;;
    esac
  done
  case "$cmd" in
${cases}
    *) opts="${t.commands.map((c) => c.name).join(" ")} help ${words(t.globals).join(" ")}" ;;
  esac
  COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}
complete -F ${fn} ${t.name}
`;
}

const zq = (s: string) => s.replace(/[\\[\]:']/g, (c) => (c === "'" ? "'\\''" : `\\${c}`));

function zshOption(o: OptionSpec): string {
  const value = o.value === undefined ? "" : `:${o.value}:${isPath(o) ? "_files" : " "}`;
  const desc = `[${zq(o.help)}]${value}`;
  return o.short === undefined
    ? `'--${o.name}${desc}'`
    : `'(-${o.short} --${o.name})'{-${o.short},--${o.name}}'${desc}'`;
}

function zsh(t: CommandTable): string {
  const fn = `_${t.name.replace(/-/g, "_")}`;
  const commandList = t.commands.map((c) => `'${c.name}:${zq(c.help)}'`).join(" \\\n      ");
  const perCommand = (c: CommandSpec) => {
    const specs = [...c.options, ...t.globals].map(zshOption);
    if (c.args !== undefined) specs.push(`'1:${c.args.name}:(${c.args.choices.join(" ")})'`);
    return `    (${c.name})\n      _arguments -s ${specs.join(" \\\n        ")}\n      ;;`;
  };
  return `#compdef ${t.name}
# zsh completion for ${t.name} (generated from its command table; \`${t.name} completion zsh\`)
${fn}() {
  local curcontext="$curcontext" state line
  local -a commands
  commands=(
      ${commandList}
  )
  _arguments -C ${t.globals.map(zshOption).join(" ")} '1: :->command' '*:: :->args'
  case $state in
  (command) _describe -t commands '${t.name} command' commands ;;
  (args)
    case $line[1] in
${t.commands.map(perCommand).join("\n")}
    esac
    ;;
  esac
}
if [ "$funcstack[1]" = "${fn}" ]; then ${fn} "$@"; else compdef ${fn} ${t.name}; fi
`;
}

const fq = (s: string) => `'${s.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;

function fishOption(t: CommandTable, o: OptionSpec, condition: string): string {
  const parts = [`complete -c ${t.name} -n ${fq(condition)} -l ${o.name}`];
  if (o.short !== undefined) parts.push(`-s ${o.short}`);
  if (o.value !== undefined) parts.push(isPath(o) ? "-r -F" : "-r -f");
  parts.push(`-d ${fq(o.help)}`);
  return parts.join(" ");
}

function fish(t: CommandTable): string {
  const names = t.commands.map((c) => c.name).join(" ");
  const lines = [
    `# fish completion for ${t.name} (generated from its command table; \`${t.name} completion fish\`)`,
    `complete -c ${t.name} -f`,
    ...t.commands.map(
      (c) =>
        `complete -c ${t.name} -n ${fq(`not __fish_seen_subcommand_from ${names}`)} -a ${c.name} -d ${fq(c.help)}`,
    ),
    ...t.globals.map((o) => fishOption(t, o, "true")),
  ];
  for (const c of t.commands) {
    const cond = `__fish_seen_subcommand_from ${c.name}`;
    for (const o of c.options) lines.push(fishOption(t, o, cond));
    if (c.args !== undefined) {
      lines.push(
        `complete -c ${t.name} -n ${fq(`${cond}; and not __fish_seen_subcommand_from ${c.args.choices.join(" ")}`)} -a ${fq(c.args.choices.join(" "))}`,
      );
    }
  }
  return `${lines.join("\n")}\n`;
}
