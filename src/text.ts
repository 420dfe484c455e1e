/**
 * Text from outside (a provider's answer, a token's claims) on its way to the terminal: control
 * characters (C0, DEL, C1) could move the cursor, rewrite earlier lines or set the window title,
 * and format characters (Unicode Cf: the bidi overrides and isolates U+202A-202E and U+2066-2069,
 * U+061C, zero-width U+200B-200F, U+FEFF, tag characters) reorder or hide what a line shows
 * (CVE-2021-42574, "Trojan Source"), so each becomes a blank; a long value is cut, since it came
 * from the network.
 */
export function printable(text: string, max = 300): string {
  const clean = text.replace(/[\p{Cc}\p{Cf}\u2028\u2029]/gu, " ").trim();
  return clean.length > max ? `${clean.slice(0, max)}...` : clean;
}

/** Like printable, for text of our own that may span lines: keeps line breaks, drops the rest. */
export function printableLines(text: string): string {
  return text.replace(/[\p{Cc}\p{Cf}]/gu, (c) => (c === "\n" ? c : " "));
}

/**
 * One line of a message on its way to the terminal (an `error:` or `hint:` line): a value in it
 * came from a file, the environment or the command line and may hold a line break, which would
 * forge a line of its own (`error: ...`); each is shown escaped (`\n`, `\r`), never as a break,
 * and the other control characters become blanks, as in printableLines.
 */
export function oneLine(text: string): string {
  return printableLines(
    text
      .replace(/\r/g, "\\r")
      .replace(/\n/g, "\\n")
      .replace(/\u2028/g, "\\u2028")
      .replace(/\u2029/g, "\\u2029"),
  );
}

/**
 * Like printable, for a value quoted in a one-line message (an issuer, a redirect's Location):
 * printable ASCII only, anything else a "?", cut when long, in double quotes.
 */
export function quoted(text: string, max = 200): string {
  const clean = text.replace(/[^\x20-\x7e]/g, "?");
  return JSON.stringify(clean.length > max ? `${clean.slice(0, max)}...` : clean);
}

/**
 * JSON for stdout, which may be a terminal: JSON.stringify escapes C0 controls but leaves DEL, the
 * C1 controls (U+009B is a CSI on some terminals) and U+2028/U+2029 raw; each is written as a
 * \u escape instead, which parses back to the same value.
 */
export function terminalJson(value: unknown, indent?: number): string {
  return JSON.stringify(value, null, indent).replace(
    /[\u007f-\u009f\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}
