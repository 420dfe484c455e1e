/**
 * Opens the sign-in URL in a browser: a command from `--browser-command` or `$BROWSER` (spawned
 * without a shell), else the platform's opener through the `open` package (xdg-open, macOS
 * `open`, Windows and WSL). Opening is best effort: a failure is a warning, never the end of the
 * sign-in, since the URL is printed as well.
 */
import { spawn } from "node:child_process";
import { delimiter } from "node:path";
import type { Env } from "./env.ts";
import { CliError, ExitCode } from "../errors.ts";

export interface OpenerOptions {
  /** From `--browser-command`, or `$BROWSER` (then a list separated by `:` as in other tools). */
  command: string | undefined;
  commandFrom: "--browser-command" | "$BROWSER";
  env: Env;
  /** Lets the browser command write to our stderr (only with --verbose: browsers are chatty). */
  showOutput: boolean;
  log: (line: string) => void;
  warn: (line: string) => void;
}

/**
 * Splits a command line into argv the way a POSIX shell would for simple words: whitespace
 * separates, '...' is literal, "..." allows \" \\ \$ \`, a backslash outside quotes escapes the next
 * character. No expansion of any kind happens.
 */
export function splitCommand(text: string): string[] {
  const argv: string[] = [];
  let word = "";
  let inWord = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (c === "'") {
      const end = text.indexOf("'", i + 1);
      if (end < 0) throw new Error("unbalanced single quote");
      word += text.slice(i + 1, end);
      inWord = true;
      i = end;
    } else if (c === '"') {
      inWord = true;
      let j = i + 1;
      for (; j < text.length && text[j] !== '"'; j++) {
        if (text[j] === "\\" && j + 1 < text.length && '"\\$`'.includes(text[j + 1] as string)) j++;
        word += text[j];
      }
      if (j >= text.length) throw new Error("unbalanced double quote");
      i = j;
    } else if (c === "\\") {
      if (i + 1 < text.length) word += text[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) argv.push(word);
      word = "";
      inWord = false;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (inWord) argv.push(word);
  return argv;
}

/** `$BROWSER` may list commands to try in order, separated by `:` (`;` on Windows) outside quotes. */
export function splitList(text: string): string[] {
  const out: string[] = [];
  let current = "";
  let quote: string | undefined;
  for (const c of text) {
    if (quote !== undefined) {
      if (c === quote) quote = undefined;
    } else if (c === "'" || c === '"') {
      quote = c;
    } else if (c === delimiter) {
      out.push(current);
      current = "";
      continue;
    }
    current += c;
  }
  out.push(current);
  return out.filter((c) => c.trim() !== "");
}

/** The URL replaces every `%s` (and `%%` becomes `%`), else it is appended as the last argument. */
export function commandArgv(command: string, url: string): string[] {
  const argv = splitCommand(command);
  if (argv.length === 0) throw new Error("the command is empty");
  if (!argv.some((a) => a.includes("%s"))) return [...argv, url];
  return argv.map((a) => a.replace(/%[s%]/g, (m) => (m === "%s" ? url : "%")));
}

/** Checks `--browser-command` before anything starts: a typo there is a usage error. */
export function checkBrowserCommand(command: string): void {
  try {
    commandArgv(command, "http://127.0.0.1/");
  } catch (e) {
    throw new CliError("bad_browser_command", `--browser-command: ${(e as Error).message}`, {
      exitCode: ExitCode.usage,
      hint: "quote the command as one argument, e.g. --browser-command 'firefox --new-window %s'",
    });
  }
}

export async function openBrowser(url: string, o: OpenerOptions): Promise<void> {
  if (o.command !== undefined) {
    const candidates = o.commandFrom === "$BROWSER" ? splitList(o.command) : [o.command];
    for (const candidate of candidates) {
      if (await spawnCommand(candidate, url, o)) return;
    }
    return;
  }
  try {
    const child = await (await platformOpener())(url);
    o.log("opened the browser with the platform's opener");
    child.once("exit", (code) => {
      if (code !== null && code !== 0)
        o.warn(`the platform's browser opener exited with code ${code}; open the URL yourself`);
    });
  } catch (e) {
    o.warn(`could not open a browser (${describe(e)}); open the URL yourself`);
  }
}

type Open = typeof import("open").default;

/**
 * The `open` package's function. In dist/ it comes from dist/vendor/open.cjs, which is CommonJS:
 * an import() of CommonJS gives its module.exports as `default` (Node's rule, which esbuild keeps),
 * so open's own default is one level further down there; from the sources (tsx) it is not.
 */
async function platformOpener(): Promise<Open> {
  const mod: { default: Open | { default: Open } } = await import("open");
  return typeof mod.default === "function" ? mod.default : mod.default.default;
}

/** Starts one browser command; true when it started (not when it succeeded: it may run for long). */
function spawnCommand(command: string, url: string, o: OpenerOptions): Promise<boolean> {
  let argv: string[];
  try {
    argv = commandArgv(command, url);
  } catch (e) {
    o.warn(`ignoring the browser command from ${o.commandFrom}: ${(e as Error).message}`);
    return Promise.resolve(false);
  }
  const [file, ...args] = argv as [string, ...string[]];
  return new Promise((resolve) => {
    let child;
    try {
      child = spawn(file, args, {
        // Its own process group: Ctrl-C in the terminal ends the sign-in, not the user's browser.
        detached: true,
        stdio: ["ignore", "ignore", o.showOutput ? "inherit" : "ignore"],
        env: o.env as NodeJS.ProcessEnv,
      });
    } catch (e) {
      o.warn(
        `could not start the browser command ${JSON.stringify(file)} from ${o.commandFrom}: ${describe(e)}`,
      );
      resolve(false);
      return;
    }
    child.once("error", (e) => {
      o.warn(
        `could not start the browser command ${JSON.stringify(file)} from ${o.commandFrom}: ${describe(e)}`,
      );
      resolve(false);
    });
    child.once("spawn", () => {
      o.log(`started the browser command from ${o.commandFrom} (${file}, pid ${child.pid})`);
      child.unref();
      child.once("exit", (code, signal) => {
        if (code !== 0 && code !== null)
          o.warn(`the browser command ${JSON.stringify(file)} exited with code ${code}`);
        else if (signal !== null) o.log(`the browser command ended by ${signal}`);
      });
      resolve(true);
    });
  });
}

function describe(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  if (err.code === "ENOENT") return "command not found";
  if (err.code === "EACCES") return "permission denied";
  return err.message ?? String(e);
}
