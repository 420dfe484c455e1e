/**
 * What a doctor check says, and how the report is shown: one line per check (ok / problem / note /
 * skipped), a fix in one or two lines under each problem, a summary; or one JSON object.
 * Nothing here may ever hold a token: checks report lengths and line numbers only.
 */
import { TROUBLESHOOTING } from "../docs.ts";
import { oneLine, printableLines, terminalJson } from "../text.ts";

export type CheckStatus = "ok" | "problem" | "note" | "skipped";

export interface Check {
  /** Stable identifier for scripts (`--json`). */
  id: string;
  /** Short label for humans. */
  title: string;
  status: CheckStatus;
  summary: string;
  /** Extra lines of explanation (shown indented under the summary). */
  details: string[];
  /** One or two lines: what to do about a problem. */
  fix: string[];
}

export function check(
  id: string,
  title: string,
  status: CheckStatus,
  summary: string,
  more: { details?: string[]; fix?: string[] } = {},
): Check {
  return { id, title, status, summary, details: more.details ?? [], fix: more.fix ?? [] };
}

export interface Report {
  configPath: string | null;
  checks: Check[];
}

export function problems(report: Report): Check[] {
  return report.checks.filter((c) => c.status === "problem");
}

export function renderJson(report: Report): string {
  const bad = problems(report);
  return `${terminalJson(
    {
      ok: bad.length === 0,
      problems: bad.length,
      config_path: report.configPath,
      checks: report.checks.map((c) => ({
        id: c.id,
        title: c.title,
        status: c.status,
        summary: c.summary,
        details: c.details,
        fix: c.fix,
      })),
    },
    2,
  )}\n`;
}

const STATUS_WIDTH = "skipped".length + 2;

export function renderText(report: Report): string {
  const titleWidth = Math.max(...report.checks.map((c) => c.title.length)) + 2;
  const indent = " ".repeat(STATUS_WIDTH + titleWidth);
  const out: string[] = [];
  for (const c of report.checks) {
    const summary = c.summary.split("\n");
    out.push(`${c.status.padEnd(STATUS_WIDTH)}${c.title.padEnd(titleWidth)}${summary[0] ?? ""}`);
    // A detail or a fix is one line: a value in it (a client_id, a path) may hold a line break.
    for (const line of [...summary.slice(1), ...c.details.map(oneLine)]) out.push(`${indent}${line}`);
    c.fix.forEach((line, i) => out.push(`${indent}${i === 0 ? "fix: " : "     "}${oneLine(line)}`));
  }
  const bad = problems(report);
  out.push(
    "",
    bad.length === 0
      ? "No problems found."
      : `${bad.length} problem${bad.length === 1 ? "" : "s"} found: ${bad.map((c) => c.title).join(", ")}.`,
  );
  if (bad.length > 0) out.push(`What each check means and the usual causes: ${TROUBLESHOOTING}`);
  // Summaries quote what others answered (a cache's WWW-Authenticate, nix's stderr): whatever got
  // through, no control characters on the terminal.
  return printableLines(`${out.join("\n")}\n`);
}
