/**
 * The refresh token in the operating system's keychain: the Secret Service on Linux (GNOME Keyring,
 * KWallet, KeePassXC all implement it) and the login Keychain on macOS.
 *
 * Both are reached through the platform's own command-line client, not a D-Bus library or a native
 * addon: libsecret's `secret-tool` speaks the Secret Service protocol (sessions, prompts, the
 * default collection) exactly as desktop applications do, and `/usr/bin/security` is the macOS
 * client that ships with the system. A pure-JavaScript D-Bus client would mean a dependency that
 * re-implements the protocol and its prompts; a native addon would need prebuilt binaries for four
 * platforms and a Nix build. The secret crosses the process boundary on stdin and stdout only: never
 * on an argv (every local user can read /proc/PID/cmdline) and never in the environment.
 *
 * Every call has a bounded wait: a locked keyring may want to show an unlock prompt, and a timer
 * must never hang on one.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Env } from "./env.ts";

/**
 * How long one keychain call may take before we give up on it: an unlock prompt may be waiting,
 * and a timer's run has no one to answer it. A sign-in has someone at the screen, who may need a
 * while to type the keyring's password: it waits longer.
 */
export const KEYCHAIN_TIMEOUT_MS = 5_000;
export const KEYCHAIN_SIGN_IN_TIMEOUT_MS = 120_000;

/** Output we read from a keychain tool: a refresh token is at most a few KiB. */
const MAX_OUTPUT = 64 * 1024;

/**
 * The most bytes `secret-tool store` takes from stdin. libsecret-tools 0.20.5 (Debian 12) keeps the
 * first 8192 bytes of a longer secret and exits 0 as if it had stored it all (measured here against
 * GNOME Keyring: 8192 bytes come back whole, 8193 or 9000 come back as 8192). A refresh token cut
 * short is a lost session, so a longer one never goes through it.
 */
export const SECRET_TOOL_MAX_SECRET = 8192;

/** Which item: one per (issuer, client_id), replaced in place. */
export interface KeychainItem {
  issuer: string;
  clientId: string;
}

/** What went wrong, for the caller's message and exit code. */
export type KeychainFailure =
  /** No keychain here: no session bus, no Secret Service, no tool, another platform. */
  | "unavailable"
  /** The keyring is locked (or its unlock prompt could not be shown). */
  | "locked"
  /** No answer within KEYCHAIN_TIMEOUT_MS (a prompt waiting for someone). */
  | "timeout"
  /** The secret is longer than the tool can keep whole: nothing was written. */
  | "too_large"
  /** The tool failed otherwise. */
  | "failed";

export class KeychainError extends Error {
  constructor(
    readonly failure: KeychainFailure,
    message: string,
    /** The tool's own words (printable, never a secret), for --verbose. */
    readonly detail?: string,
  ) {
    super(message);
    this.name = "KeychainError";
  }
}

export interface Keychain {
  /** "the Secret Service" or "the macOS login Keychain", for messages. */
  readonly name: string;
  /** The token, or undefined when there is no such item. Throws KeychainError. */
  read(item: KeychainItem): Promise<string | undefined>;
  /** Creates or replaces the item. Throws KeychainError. */
  write(item: KeychainItem, secret: string): Promise<void>;
  /** Removes the item; false when there was none. Throws KeychainError. */
  remove(item: KeychainItem): Promise<boolean>;
}

/** One run of a keychain tool. Injected in unit tests (macOS cannot run here). */
export interface ToolResult {
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  /** The tool is not installed (ENOENT). */
  missing: boolean;
}
export type RunTool = (
  file: string,
  args: readonly string[],
  stdin: string,
  env: Env,
  timeoutMs: number,
) => Promise<ToolResult>;

/** The time limit of the next keychain call, in milliseconds (asked at each call). */
export type KeychainTimeout = () => number;
const standardTimeout: KeychainTimeout = () => KEYCHAIN_TIMEOUT_MS;

/** The label a person sees in Seahorse or Keychain Access. */
export function itemLabel(item: KeychainItem): string {
  return printableLabel(`nix-cache-login: ${item.issuer} (${item.clientId})`);
}

/** The Secret Service attributes of the item (not secret: they name it). */
export function secretServiceAttributes(item: KeychainItem): string[] {
  return ["service", "nix-cache-login", "issuer", item.issuer, "client_id", item.clientId];
}

/** The macOS account name of the item: both parts percent-encoded, so no quoting is ever needed. */
export function macosAccount(item: KeychainItem): string {
  return `${encodeURIComponent(item.clientId)}@${encodeURIComponent(item.issuer)}`;
}

export const MACOS_SERVICE = "nix-cache-login";
export const MACOS_SECURITY = "/usr/bin/security";

function printableLabel(text: string): string {
  // A label goes into `security -i`'s quoted word: no quote, backslash or control character.
  return text.replace(/["\\\p{Cc}]/gu, "_");
}

/**
 * Why no keychain can answer here, or undefined when one may. Cheap: no process is started, so a
 * headless server under `token_storage = "auto"` pays nothing.
 */
export function keychainUnavailable(
  env: Env,
  platform: NodeJS.Platform = process.platform,
): string | undefined {
  if (platform === "darwin") return undefined;
  if (platform !== "linux") return `no keychain support on ${platform}`;
  if (env.DBUS_SESSION_BUS_ADDRESS !== undefined && env.DBUS_SESSION_BUS_ADDRESS !== "") return undefined;
  // The user manager's bus (systemd user units, dbus-broker/dbus-daemon --session under systemd).
  const runtime = env.XDG_RUNTIME_DIR;
  if (runtime !== undefined && runtime !== "" && existsSync(join(runtime, "bus"))) return undefined;
  return "no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is not set)";
}

/** The keychain of this platform. */
export function platformKeychain(
  env: Env,
  platform: NodeJS.Platform = process.platform,
  run: RunTool = runTool,
  timeout: KeychainTimeout = standardTimeout,
): Keychain {
  return platform === "darwin" ? macosKeychain(env, run, timeout) : secretService(env, run, timeout);
}

/** The tool's first line of complaint, printable, for --verbose and messages. */
function complaint(r: ToolResult): string {
  const line =
    r.stderr
      .split("\n")
      .map((l) => l.trim())
      .find((l) => l !== "" && !/Gtk-WARNING|^\(gcr-prompter|^\*\* Message/.test(l)) ?? "";
  return line.replace(/\p{Cc}/gu, "?").slice(0, 300);
}

function timeoutError(name: string, ms: number): KeychainError {
  return new KeychainError(
    "timeout",
    `${name} did not answer within ${ms / 1000} s (locked, waiting for an unlock prompt?)`,
  );
}

/** Linux: the Secret Service through libsecret's secret-tool. */
export function secretService(env: Env, run: RunTool = runTool, timeout = standardTimeout): Keychain {
  const name = "the Secret Service";
  const tool = "secret-tool";
  const call = async (args: string[], stdin = ""): Promise<ToolResult> => {
    const why = keychainUnavailable(env, "linux");
    if (why !== undefined) throw new KeychainError("unavailable", why);
    const ms = timeout();
    const r = await run(tool, args, stdin, env, ms);
    if (r.missing) {
      throw new KeychainError("unavailable", "secret-tool is not installed (Debian/Ubuntu: libsecret-tools)");
    }
    if (r.timedOut) throw timeoutError(name, ms);
    return r;
  };
  const failure = (r: ToolResult, what: string): KeychainError => {
    const said = complaint(r);
    if (/locked/i.test(said)) return new KeychainError("locked", `${name} is locked`, said);
    if (/org\.freedesktop\.secrets|autolaunch|D-Bus|dbus/i.test(said)) {
      return new KeychainError("unavailable", `no Secret Service answers on the session bus`, said);
    }
    return new KeychainError("failed", `${name} could not ${what}${said === "" ? "" : `: ${said}`}`, said);
  };
  const attrs = (item: KeychainItem) => secretServiceAttributes(item);
  return {
    name,
    async read(item) {
      const r = await call(["lookup", ...attrs(item)]);
      if (r.code === 0 && r.stdout !== "") return r.stdout.replace(/\n$/, "");
      if (complaint(r) !== "") throw failure(r, "read the refresh token");
      // secret-tool says nothing both when there is no item and when the collection is locked
      // (its unlock prompt failed or was dismissed); `search` without --unlock lists a locked
      // item's attributes, so it tells the two apart. It runs only on this failure path.
      const s = await call(["search", ...attrs(item)]);
      if (/^\[\//m.test(s.stdout)) {
        throw new KeychainError("locked", `${name} is locked`, complaint(s) || undefined);
      }
      return undefined;
    },
    async write(item, secret) {
      // Refused before any process starts: secret-tool would keep a truncated copy and exit 0.
      if (Buffer.byteLength(secret, "utf8") > SECRET_TOOL_MAX_SECRET) {
        throw new KeychainError(
          "too_large",
          `the refresh token is longer than the ${SECRET_TOOL_MAX_SECRET} bytes secret-tool can store`,
        );
      }
      // `store` replaces the item with the same attributes in place (libsecret's replace flag).
      const r = await call(["store", `--label=${itemLabel(item)}`, ...attrs(item)], secret);
      if (r.code !== 0) throw failure(r, "save the refresh token");
    },
    async remove(item) {
      const before = await call(["search", ...attrs(item)]);
      if (!/^\[\//m.test(before.stdout)) {
        if (complaint(before) !== "" && before.code !== 0) throw failure(before, "look up the item");
        return false;
      }
      const r = await call(["clear", ...attrs(item)]);
      if (r.code !== 0) throw failure(r, "remove the item");
      return true;
    },
  };
}

/** The `security -i` line that stores `secret`, hex-encoded so that no byte of it needs quoting. */
export function macosStoreCommand(item: KeychainItem, secret: string): string {
  const hex = Buffer.from(secret, "utf8").toString("hex");
  return (
    `add-generic-password -U -s ${MACOS_SERVICE} -a ${macosAccount(item)}` +
    ` -l "${itemLabel(item)}" -X ${hex}\n`
  );
}

/**
 * macOS: the login Keychain through /usr/bin/security. Writing goes through `security -i`, which
 * reads its command from stdin: `add-generic-password -w SECRET` would put the token on an argv.
 * Exit status 44 is errSecItemNotFound; 36 and 51 come with a locked keychain or a prompt that
 * cannot be shown (errSecInteractionNotAllowed over SSH).
 */
export function macosKeychain(env: Env, run: RunTool = runTool, timeout = standardTimeout): Keychain {
  const name = "the macOS login Keychain";
  const call = async (args: string[], stdin = ""): Promise<ToolResult> => {
    const ms = timeout();
    const r = await run(MACOS_SECURITY, args, stdin, env, ms);
    if (r.missing) throw new KeychainError("unavailable", `${MACOS_SECURITY} is missing`);
    if (r.timedOut) throw timeoutError(name, ms);
    return r;
  };
  const failure = (r: ToolResult, what: string): KeychainError => {
    const said = complaint(r);
    if (r.code === 36 || r.code === 51 || /interaction is not allowed|locked/i.test(said)) {
      return new KeychainError("locked", `${name} is locked`, said);
    }
    return new KeychainError("failed", `${name} could not ${what}${said === "" ? "" : `: ${said}`}`, said);
  };
  const id = (item: KeychainItem) => ["-s", MACOS_SERVICE, "-a", macosAccount(item)];
  return {
    name,
    async read(item) {
      const r = await call(["find-generic-password", ...id(item), "-w"]);
      if (r.code === 0) return r.stdout.replace(/\n$/, "");
      if (r.code === 44) return undefined;
      throw failure(r, "read the refresh token");
    },
    async write(item, secret) {
      const command = macosStoreCommand(item, secret);
      const r = await call(["-i"], command);
      // `security -i` exits 0 whatever its command did; a failed command says so on stderr. Should
      // it quote the command it read, the token (hex-encoded in it) must not reach our message.
      const hex = Buffer.from(secret, "utf8").toString("hex");
      const said = { ...r, stdout: "", stderr: r.stderr.split(hex).join("[the token]") };
      if (r.code !== 0 || complaint(said) !== "") throw failure(said, "save the refresh token");
    },
    async remove(item) {
      const r = await call(["delete-generic-password", ...id(item)]);
      if (r.code === 0) return true;
      if (r.code === 44) return false;
      throw failure(r, "remove the item");
    },
  };
}

/** Runs a keychain tool without a shell: `stdin` in, bounded output out, killed after the timeout. */
export const runTool: RunTool = (file, args, stdin, env, timeoutMs) =>
  new Promise((resolve) => {
    // Loaded here, not at start-up: `status` never starts a keychain tool.
    const { spawn } = process.getBuiltinModule("node:child_process");
    const child = spawn(file, args, { env: env as NodeJS.ProcessEnv, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    let timedOut = false;
    let missing = false;
    const take = (now: string, more: Buffer) =>
      now.length >= MAX_OUTPUT ? now : (now + more.toString("utf8")).slice(0, MAX_OUTPUT);
    child.stdout.on("data", (b: Buffer) => (stdout = take(stdout, b)));
    child.stderr.on("data", (b: Buffer) => (stderr = take(stderr, b)));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.on("error", (e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT") missing = true;
      else stderr += String(e.message);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, timedOut, missing });
    });
    // A tool that exits before reading stdin: its EPIPE is not ours to report.
    child.stdin.on("error", () => undefined);
    child.stdin.end(stdin);
  });
