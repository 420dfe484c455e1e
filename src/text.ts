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
 * Like printable, for a value quoted in a one-line message (an issuer, a redirect's Location):
 * printable ASCII only, anything else a "?", cut when long, in double quotes.
 */
export function quoted(text: string, max = 200): string {
  const clean = text.replace(/[^\x20-\x7e]/g, "?");
  return JSON.stringify(clean.length > max ? `${clean.slice(0, max)}...` : clean);
}
