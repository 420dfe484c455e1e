/**
 * A real Secret Service for the keychain tests: a private D-Bus session bus (Debian's dbus-daemon)
 * with GNOME Keyring's daemon on it, unlocked with a test password, its keyrings under a temp
 * HOME. The CLI reaches it through DBUS_SESSION_BUS_ADDRESS, as a desktop session's processes do.
 * `secret-tool` (libsecret-tools) and Debian's python3-secretstorage read it back independently.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { promisify } from "node:util";

const run = promisify(execFile);

export const KEYRING_PASSWORD = "test-keyring-password";

export interface Keyring {
  /** The environment a process needs to reach this bus (and nothing else of the desktop). */
  env: Record<string, string>;
  /** Every item of the default collection: label, attributes, secret (python3-secretstorage). */
  items(): Promise<{ label: string; attributes: Record<string, string>; secret: string }[]>;
  lock(): Promise<void>;
  /**
   * With `display`: waits for the unlock prompt's window, then types the keyring's password into
   * it and presses Return, as a person would (xdotool on the X server the prompt opened on).
   * `afterMs` is how long the person takes, counted from the window's opening. Resolves with the
   * window's title once typed.
   */
  answerUnlockPrompt(afterMs?: number): Promise<string>;
  /** Starts counting the calls that write an item (CreateItem, SetSecret) on the bus. */
  countWrites(): Promise<{ count(): number; stop(): Promise<void> }>;
  stop(): Promise<void>;
}

const MISSING =
  "the keychain tests need Debian's dbus-daemon, gnome-keyring, libsecret-tools, python3-secretstorage, xvfb and xdotool: apt-get install -y --no-install-recommends dbus-daemon gnome-keyring libsecret-tools python3-secretstorage xvfb xdotool (npm test installs them)";

/**
 * `home` holds the keyrings (XDG_DATA_HOME/keyrings); it is the workspace's HOME in the tests. With
 * `display`, an X server (Debian's Xvfb) runs for the bus's activated services, so a locked
 * keyring's unlock prompt (gcr-prompter) really opens a window and waits for someone to answer it;
 * without one, the prompt fails at once, as on a headless machine.
 */
export async function startKeyring(home: string, o: { display?: boolean } = {}): Promise<Keyring> {
  const tools = ["dbus-daemon", "gnome-keyring-daemon", "secret-tool", "/usr/bin/python3"];
  if (o.display === true) tools.push("Xvfb", "xdotool");
  for (const tool of tools) {
    await run("sh", ["-c", `command -v ${tool}`]).catch(() => {
      throw new Error(`${tool} not found: ${MISSING}`);
    });
  }
  const runtime = join(home, ".run");
  await mkdir(runtime, { recursive: true, mode: 0o700 });
  const base: Record<string, string> = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: home,
    XDG_DATA_HOME: join(home, ".local", "share"),
    XDG_RUNTIME_DIR: runtime,
    XDG_CACHE_HOME: join(home, ".cache"),
    XDG_CONFIG_HOME: join(home, ".config"),
    LANG: "C.UTF-8",
    // The prompt would start the accessibility bus too; nothing here needs it.
    NO_AT_BRIDGE: "1",
  };
  const children: ChildProcess[] = [];
  if (o.display === true) {
    const x = spawn("Xvfb", ["-displayfd", "3", "-nolisten", "tcp"], {
      env: base,
      stdio: ["ignore", "ignore", "ignore", "pipe"],
    });
    children.push(x);
    const fd = x.stdio[3] as NodeJS.ReadableStream;
    base.DISPLAY = await new Promise<string>((resolve, reject) => {
      let out = "";
      fd.setEncoding("utf8");
      fd.on("data", (d: string) => {
        out += d;
        if (out.includes("\n")) resolve(`:${out.trim()}`);
      });
      x.once("exit", (c) => reject(new Error(`Xvfb exited (${c}) before choosing a display`)));
    });
  }
  const bus = spawn("dbus-daemon", ["--session", "--nofork", "--print-address=1", "--nopidfile"], {
    env: base,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const address = await new Promise<string>((resolve, reject) => {
    let out = "";
    bus.stdout.setEncoding("utf8").on("data", (d: string) => {
      out += d;
      const line = out.split("\n")[0];
      if (out.includes("\n") && line !== undefined) resolve(line.trim());
    });
    bus.once("exit", (c) => reject(new Error(`dbus-daemon exited (${c}) before printing its address`)));
  });
  const env = { ...base, DBUS_SESSION_BUS_ADDRESS: address };
  const daemon = spawn("gnome-keyring-daemon", ["--foreground", "--unlock", "--components=secrets"], {
    env,
    stdio: ["pipe", "ignore", "ignore"],
  });
  // A daemon that dies at once is reported by the readiness wait below, not by an EPIPE here.
  daemon.stdin.on("error", () => {});
  daemon.stdin.end(KEYRING_PASSWORD);
  children.unshift(daemon, bus);
  const py = async (code: string): Promise<string> =>
    (await run("/usr/bin/python3", ["-c", code], { env })).stdout;
  const prelude =
    "import secretstorage, json\nb = secretstorage.dbus_init()\nc = secretstorage.get_default_collection(b)\n";
  // Ready when the daemon owns org.freedesktop.secrets and its login collection is unlocked.
  let last: unknown;
  for (let i = 0; ; i++) {
    try {
      const out = await py(`${prelude}print(c.is_locked())`);
      if (out.trim() === "False") break;
      last = `its login collection is locked (${out.trim()})`;
    } catch (e) {
      last = e;
    }
    if (i > 200) throw new Error("gnome-keyring-daemon did not come up unlocked", { cause: last });
    await delay(50);
  }
  return {
    env,
    async items() {
      const out = await py(
        `${prelude}print(json.dumps([{"label": i.get_label(), "attributes": i.get_attributes(), "secret": i.get_secret().decode()} for i in c.get_all_items()]))`,
      );
      return JSON.parse(out) as { label: string; attributes: Record<string, string>; secret: string }[];
    },
    async lock() {
      await py(`${prelude}c.lock()\nassert c.is_locked()`);
    },
    async answerUnlockPrompt(afterMs = 0) {
      if (base.DISPLAY === undefined)
        throw new Error("answerUnlockPrompt needs startKeyring(home, { display: true })");
      const xdotool = (...args: string[]) => run("xdotool", args, { env }).then((r) => r.stdout.trim());
      let title = "";
      for (let i = 0; !/unlock/i.test(title); i++) {
        if (i > 600) throw new Error("no unlock prompt opened on the X server within 30 s");
        await delay(50);
        const ids = await xdotool("search", "--onlyvisible", "--name", ".").catch(() => "");
        for (const id of ids.split("\n").filter((x) => x !== "")) {
          const name = await xdotool("getwindowname", id).catch(() => "");
          if (/unlock/i.test(name)) title = name;
        }
      }
      await delay(afterMs);
      // The prompt grabs the keyboard: what is typed goes to its password field.
      // From stdin, not argv (every process's argv is public), as the tool itself treats secrets.
      const typing = run("xdotool", ["type", "--delay", "20", "--file", "-"], { env });
      typing.child.stdin?.end(KEYRING_PASSWORD);
      await typing;
      await xdotool("key", "Return");
      return title;
    },
    async countWrites() {
      const monitor = spawn(
        "dbus-monitor",
        [
          "--address",
          address,
          "type='method_call',interface='org.freedesktop.Secret.Collection',member='CreateItem'",
          "type='method_call',interface='org.freedesktop.Secret.Item',member='SetSecret'",
        ],
        { env, stdio: ["ignore", "pipe", "ignore"] },
      );
      let text = "";
      monitor.stdout.setEncoding("utf8").on("data", (d: string) => (text += d));
      // dbus-monitor prints its own NameAcquired signal once it is listening.
      for (let i = 0; !text.includes("NameAcquired"); i++) {
        if (monitor.exitCode !== null || i > 500) throw new Error("dbus-monitor did not start listening");
        await delay(20);
      }
      return {
        count: () => (text.match(/member=(CreateItem|SetSecret)\b/g) ?? []).length,
        async stop() {
          monitor.kill("SIGTERM");
          await new Promise((r) => monitor.once("close", r));
        },
      };
    },
    async stop() {
      for (const c of children) {
        if (c.exitCode === null && c.signalCode === null) {
          c.kill("SIGTERM");
          await new Promise((r) => c.once("close", r));
        }
      }
    },
  };
}
