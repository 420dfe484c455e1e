/**
 * A netrc editor that keeps every byte it does not change.
 *
 * The text is handled as latin1 so that each byte is one character: whatever encoding the file
 * uses, bytes we do not touch are written back exactly. The grammar follows curl's reader, the
 * one Nix uses: entries start at `machine NAME` or `default`; `login`, `password` and `account`
 * take a value; `macdef NAME` is followed by a body that ends at the first empty line; a `#` that
 * starts a line (after blanks) comments out the rest of it (curl >= 8.11), while a `#` elsewhere is
 * an ordinary token; tokens may be quoted with `\"`, `\\`, `\n`, `\t`, `\r` escapes (curl >= 7.84).
 */

interface NetrcToken {
  start: number;
  end: number;
  value: string;
  /** A keyword (`machine`, `login`, ...) in lower case; undefined for a value or a quoted token. */
  keyword: string | undefined;
  /** For `macdef`: where its body ends. */
  macroEnd?: number;
}

/** The longest keyword (`password`): a longer word is never lower-cased to be compared. */
const KEYWORD_MAX = 8;

export interface NetrcEntry {
  kind: "machine" | "default";
  /** Lower-cased machine name; undefined for `default`. */
  machine: string | undefined;
  login: string | undefined;
  password: string | undefined;
  /** Byte range from the keyword to the end of the entry's last token (or macdef body). */
  start: number;
  end: number;
  /** 1-based line of the keyword, for messages. */
  line: number;
}

export interface Netrc {
  text: string;
  entries: NetrcEntry[];
}

export class NetrcSyntaxError extends Error {
  constructor(
    readonly line: number,
    message: string,
  ) {
    super(`line ${line}: ${message}`);
    this.name = "NetrcSyntaxError";
  }
}

/** Curl (>= 8.11.1) drops netrc tokens longer than this and then sends no credentials at all. */
export const CURL_NETRC_MAX_TOKEN = 4095;

/**
 * Curl up to 8.10 (Debian 12 has 7.88, and so does the Nix built on it) reads the netrc a line at
 * a time into a 4096-byte buffer: a line of more than 4095 bytes, its line break included, is not
 * read (curl lib/netrc.c). Measured with curl 7.88.1: `password ` and a 4085-byte token plus "\n"
 * is read, one byte more is not, and the entry then has no password: silently, Nix gets 401.
 * (The entries on other lines still work there. curl 8.14.1 reads lines up to 16383 bytes but
 * stops at a token over 4095 bytes, and then fails for that entry and every one after it.)
 */
export const CURL_NETRC_MAX_LINE = 4095;

/** The bytes of the `password` line formatEntry writes for `password`, its line break included. */
export function passwordLineBytes(password: string, eol = "\n"): number {
  return Buffer.byteLength(`password ${quoteIfNeeded(password)}${eol}`, "latin1");
}

const VALUE_KEYS = new Set(["login", "password", "account"]);
// Sticky patterns, matched at a position: tokens are long (a JWT is over a kilobyte), so they are
// taken in one match rather than a character at a time.
const SPACE = /[ \t\r\f\v\n]+/y;
const WORD = /[^ \t\r\f\v\n]+/y;
const QUOTED_RUN = /[^"\\\n]+/y;
const BLANKS = /^[ \t\r\f\v]*$/;
const isBlank = (c: string | undefined) => c === " " || c === "\t" || c === "\r" || c === "\f" || c === "\v";

function matchAt(re: RegExp, text: string, i: number): string | undefined {
  re.lastIndex = i;
  return re.exec(text)?.[0];
}

function lineOf(text: string, index: number): number {
  let line = 1;
  for (let i = 0; i < index; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}

function lineStart(text: string, index: number): number {
  return text.lastIndexOf("\n", index - 1) + 1;
}

/**
 * The tokens of the text one at a time, skipping comments and macdef bodies: a big netrc is never
 * held as a list of tokens (100,000 entries are 600,000 of them).
 */
function tokenizer(text: string): () => NetrcToken | undefined {
  let i = 0;
  let wantValue = false; // the previous token was a keyword whose value this token is (curl reads it literally)
  return () => {
    while (i < text.length) {
      const c = text[i];
      const space = matchAt(SPACE, text, i);
      if (space !== undefined) {
        i += space.length;
        continue;
      }
      if (c === "#" && BLANKS.test(text.slice(lineStart(text, i), i))) {
        const nl = text.indexOf("\n", i);
        i = nl === -1 ? text.length : nl;
        continue;
      }
      const start = i;
      let value = "";
      if (c === '"') {
        i++;
        let closed = false;
        while (i < text.length) {
          const run = matchAt(QUOTED_RUN, text, i);
          if (run !== undefined) {
            value += run;
            i += run.length;
            continue;
          }
          const d = text[i] as string;
          if (d === "\\" && i + 1 < text.length && text[i + 1] !== "\n") {
            const e = text[i + 1] as string;
            value += e === "n" ? "\n" : e === "t" ? "\t" : e === "r" ? "\r" : e;
            i += 2;
            continue;
          }
          if (d === '"') {
            closed = true;
            i++;
            break;
          }
          if (d === "\n") break;
          value += d;
          i++;
        }
        if (!closed) throw new NetrcSyntaxError(lineOf(text, start), "unterminated quoted token");
      } else {
        value = matchAt(WORD, text, i) ?? "";
        i += value.length;
      }
      const keyword: string | undefined =
        c !== '"' && !wantValue && value.length <= KEYWORD_MAX ? value.toLowerCase() : undefined;
      wantValue = keyword === "machine" || (keyword !== undefined && VALUE_KEYS.has(keyword));
      const token: NetrcToken = { start, end: i, value, keyword };
      if (keyword === "macdef") {
        // As in curl, the rest of the `macdef` line (the macro's name) is skipped; the body starts on
        // the next line and ends at the first empty line (or end of file).
        const nl = text.indexOf("\n", i);
        let end = text.length;
        if (nl !== -1) {
          let pos = nl + 1;
          end = nl;
          while (pos < text.length) {
            const next = text.indexOf("\n", pos);
            const lineText = text.slice(pos, next === -1 ? text.length : next);
            if (/^\r*$/.test(lineText)) break;
            end = next === -1 ? text.length : next;
            if (next === -1) break;
            pos = next + 1;
          }
        }
        token.macroEnd = end;
        i = end;
      }
      return token;
    }
    return undefined;
  };
}

export function parseNetrc(text: string): Netrc {
  const entries: NetrcEntry[] = [];
  visitEntries(text, (e) => entries.push(e));
  return { text, entries };
}

/**
 * Each entry of the text, in order, to `visit`; throws NetrcSyntaxError on the first fault. For a
 * reader that keeps only what it looks for: a big netrc's entries are never all held at once.
 */
export function visitEntries(text: string, visit: (entry: NetrcEntry) => void): void {
  // curl stops reading at a NUL: the entries after it exist for us but not for curl (or Nix).
  const nul = text.indexOf("\0");
  if (nul !== -1) {
    throw new NetrcSyntaxError(lineOf(text, nul), "contains a NUL byte, where curl stops reading the file");
  }
  const next = tokenizer(text);
  let current: NetrcEntry | undefined;
  // Line numbers are counted as the tokens go by, so parsing stays linear in the file's size
  // (counting from the top for every entry made a 10,000-entry netrc take seconds).
  let counted = 0;
  let line = 1;
  const lineAt = (index: number): number => {
    for (let i = text.indexOf("\n", counted); i !== -1 && i < index; i = text.indexOf("\n", i + 1)) line++;
    counted = Math.max(counted, index);
    return line;
  };
  for (let tok = next(); tok !== undefined; tok = next()) {
    // Keywords are case-insensitive in curl (`MACHINE` and `Default` count too).
    const word = tok.keyword;
    if (word === "machine" || word === "default") {
      if (current !== undefined) visit(current);
      current = {
        kind: word,
        machine: undefined,
        login: undefined,
        password: undefined,
        start: tok.start,
        end: tok.end,
        line: lineAt(tok.start),
      };
      if (word === "machine") {
        const name = next();
        if (name === undefined) throw new NetrcSyntaxError(current.line, "`machine` has no host name");
        current.machine = name.value.toLowerCase();
        current.end = name.end;
      }
      continue;
    }
    if (word === "macdef") {
      if (current !== undefined) current.end = tok.macroEnd ?? tok.end;
      continue;
    }
    if (word !== undefined && VALUE_KEYS.has(word)) {
      const arg = next();
      if (arg === undefined) throw new NetrcSyntaxError(lineAt(tok.start), `\`${word}\` has no value`);
      if (current !== undefined) {
        if (word === "login") current.login ??= arg.value;
        if (word === "password") current.password ??= arg.value;
        current.end = arg.end;
      }
      continue;
    }
    // Unknown words are kept as they are (curl skips them too).
    if (current !== undefined) current.end = tok.end;
  }
  if (current !== undefined) visit(current);
}

/** The first entry curl would use for `host` (a `default` entry matches every host). */
export function findEntry(netrc: Netrc, host: string): NetrcEntry | undefined {
  const h = host.toLowerCase();
  return netrc.entries.find((e) => e.kind === "default" || e.machine === h);
}

function quoteIfNeeded(value: string): string {
  if (value !== "" && !/[\s"\\]/.test(value) && !value.startsWith("#")) return value;
  return `"${value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n").replace(/\t/g, "\\t").replace(/\r/g, "\\r")}"`;
}

/**
 * Our entry, one keyword per line: the token's line then holds only `password TOKEN`, which gives
 * the token the most room under curl's line limit (CURL_NETRC_MAX_LINE). No trailing line break.
 */
export function formatEntry(host: string, login: string, password: string, eol = "\n"): string {
  return `machine ${quoteIfNeeded(host)}${eol}login ${quoteIfNeeded(login)}${eol}password ${quoteIfNeeded(password)}`;
}

interface Edit {
  start: number;
  end: number;
  insert: string;
}

function applyEdits(text: string, edits: Edit[]): string {
  // Two neighbouring removals on one line can share the blanks between them: merge them.
  const merged: Edit[] = [];
  for (const e of [...edits].sort((a, b) => a.start - b.start)) {
    const last = merged[merged.length - 1];
    if (last !== undefined && e.start < last.end && last.insert === "" && e.insert === "") {
      last.end = Math.max(last.end, e.end);
    } else merged.push({ ...e });
  }
  let out = text;
  for (const e of merged.reverse()) {
    out = out.slice(0, e.start) + e.insert + out.slice(e.end);
  }
  return out;
}

/** The byte range to cut so that an entry disappears without disturbing its neighbours. */
function removalSpan(text: string, e: NetrcEntry): { start: number; end: number; wholeLines: boolean } {
  const ls = lineStart(text, e.start);
  const startsLine = text.slice(ls, e.start).split("").every(isBlank);
  let after = e.end;
  while (after < text.length && isBlank(text[after])) after++;
  const endsLine = after >= text.length || text[after] === "\n";
  if (startsLine && endsLine) {
    return { start: ls, end: after < text.length ? after + 1 : after, wholeLines: true };
  }
  if (!endsLine) {
    return { start: e.start, end: after, wholeLines: false };
  }
  let before = e.start;
  while (before > 0 && isBlank(text[before - 1])) before--;
  return { start: before, end: e.end, wholeLines: false };
}

/** Whether the text ends inside a macdef body that no empty line has closed: curl would skip anything appended. */
function endsInOpenMacro(text: string): boolean {
  const next = tokenizer(text);
  let last: number | undefined;
  for (let tok = next(); tok !== undefined; tok = next()) {
    if (tok.macroEnd !== undefined) last = Math.max(last ?? 0, tok.macroEnd);
  }
  if (last === undefined) return false;
  return !/^\n\r*\n/.test(text.slice(last));
}

function lineEnding(text: string): string {
  return text.includes("\r\n") ? "\r\n" : "\n";
}

/**
 * Makes `machine host login L password T` the first entry for host (before any `default`),
 * and drops every other entry for that host: curl uses the first match only.
 */
export function upsertEntry(text: string, host: string, login: string, password: string): string {
  const netrc = parseNetrc(text);
  const h = host.toLowerCase();
  const eol = lineEnding(text);
  const line = formatEntry(host, login, password, eol);
  const matches = netrc.entries.filter((e) => e.kind === "machine" && e.machine === h);
  const firstDefault = netrc.entries.findIndex((e) => e.kind === "default");
  const first = matches[0];
  const edits: Edit[] = [];
  const replaceInPlace =
    first !== undefined && (firstDefault === -1 || netrc.entries.indexOf(first) < firstDefault);
  if (first !== undefined && replaceInPlace) {
    const span = removalSpan(text, first);
    if (span.wholeLines) {
      const hadNewline = text[span.end - 1] === "\n";
      const lineEol = hadNewline && text[span.end - 2] === "\r" ? "\r\n" : hadNewline ? "\n" : "";
      edits.push({ start: span.start, end: span.end, insert: line + lineEol });
    } else {
      // Our entry shares a line with others: it gets lines of its own, so that nothing lengthens
      // the token's line.
      let after = first.end;
      while (after < text.length && isBlank(text[after])) after++;
      const endsLine = after >= text.length || text[after] === "\n" || text.startsWith("\r\n", after);
      const ls = lineStart(text, first.start);
      const startsLine = text.slice(ls, first.start).split("").every(isBlank);
      let before = first.start;
      while (!startsLine && before > ls && isBlank(text[before - 1])) before--;
      edits.push({
        start: startsLine ? first.start : before,
        end: endsLine ? first.end : after,
        insert: (startsLine ? "" : eol) + line + (endsLine ? "" : eol),
      });
    }
  } else if (firstDefault !== -1) {
    const d = netrc.entries[firstDefault] as NetrcEntry;
    const ls = lineStart(text, d.start);
    const startsLine = text.slice(ls, d.start).split("").every(isBlank);
    let before = d.start;
    while (!startsLine && before > ls && isBlank(text[before - 1])) before--;
    edits.push(
      startsLine
        ? { start: ls, end: ls, insert: line + eol }
        : { start: before, end: d.start, insert: eol + line + eol },
    );
  } else {
    const sep = (text === "" || text.endsWith("\n") ? "" : eol) + (endsInOpenMacro(text) ? eol : "");
    edits.push({ start: text.length, end: text.length, insert: sep + line + eol });
  }
  for (const m of matches) {
    if (m === first && replaceInPlace) continue;
    const span = removalSpan(text, m);
    edits.push({ start: span.start, end: span.end, insert: "" });
  }
  return applyEdits(text, edits);
}

/** Removes every entry for host; returns the text unchanged when there is none. */
export function removeEntries(text: string, host: string): string {
  const netrc = parseNetrc(text);
  const h = host.toLowerCase();
  const edits = netrc.entries
    .filter((e) => e.kind === "machine" && e.machine === h)
    .map((e) => ({ ...removalSpan(text, e), insert: "" }));
  return applyEdits(text, edits);
}
