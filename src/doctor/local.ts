/**
 * Doctor checks on local files: the configuration, the token state and the netrc as curl (and so
 * Nix) reads it. No network here.
 */
import { stat } from "node:fs/promises";
import { describeUid, formatMode } from "../fs/file-trust.ts";
import type { Config } from "../config/load.ts";
import type { Context } from "../context.ts";
import { describeExpiry, formatInstant } from "../duration.ts";
import {
  describeRefreshToken,
  noRefreshTokenFix,
  noRefreshTokenIssued,
  noRefreshTokenReason,
} from "../core/refresh-token.ts";
import { CliError } from "../errors.ts";
import { readNetrc } from "../netrc/read.ts";
import {
  CURL_NETRC_MAX_LINE,
  CURL_NETRC_MAX_TOKEN,
  findEntry,
  type Netrc,
  type NetrcEntry,
} from "../netrc/netrc.ts";
import { parseClientKey } from "../oidc/client-key.ts";
import { renewCommand } from "../core/freshness.ts";
import { CLOCK_SKEW_NOTICE_MS, describeSkew, providerTime } from "../core/provider-clock.ts";
import { loadSetup, readClientKeyText, readClientSecret, type Setup } from "../core/setup.ts";
import type { TokenState } from "../store/state.ts";
import { check, type Check } from "./report.ts";
import { oneLine } from "../text.ts";

function errorText(e: unknown): { message: string; hint: string | undefined } {
  if (e instanceof CliError) return { message: e.message, hint: e.hint };
  return { message: (e as Error).message ?? String(e), hint: undefined };
}

export function configCheck(ctx: Context): { check: Check; setup: Setup | undefined } {
  try {
    const setup = loadSetup(ctx);
    const c = setup.config;
    const who =
      c.mode === "service-account"
        ? `service account ${c.clientId}`
        : `user sign-in with client ${c.clientId}`;
    return {
      setup,
      check: check("config", "config", "ok", `${c.path} (${c.source}) is valid`, {
        details: [`${who} at ${c.issuer}; cache ${c.cacheHosts.map((h) => h.url).join(", ")}`],
      }),
    };
  } catch (e) {
    const { message, hint } = errorText(e);
    // Every problem is a line of its own; a line break inside one (a key, a path) is not.
    const lines =
      e instanceof CliError && e.items !== undefined
        ? [e.headline, ...e.items].map(oneLine)
        : [oneLine(message)];
    return {
      setup: undefined,
      check: check("config", "config", "problem", lines[0] ?? message, {
        details: lines.slice(1),
        fix: [hint ?? "fix the configuration file (keys are listed in `nix-cache-login --help`)"],
      }),
    };
  }
}

export function clientSecretCheck(config: Config): Check {
  const key = config.clientKeyFile !== undefined;
  const id = key ? "client_key" : "client_secret";
  const title = key ? "client key" : "client secret";
  // Readable by every local user: it works, but it is a problem to fix.
  const warnings: string[] = [];
  const onWarning = (line: string) => warnings.push(line);
  const readable = () =>
    check(id, title, "problem", warnings[0] ?? "", {
      fix: ["make it readable by its user only (or root and a service's group): mode 0600 or 0640"],
    });
  try {
    if (key) {
      const { keyText, keyFile } = readClientKeyText(config, onWarning);
      const { alg } = parseClientKey(config, keyText, keyFile);
      if (warnings.length > 0) return readable();
      return check(
        id,
        title,
        "ok",
        `${config.clientKeyFile} holds a private key; client assertions are signed with ${alg} (private_key_jwt)`,
      );
    }
    readClientSecret(config, onWarning);
    if (warnings.length > 0) return readable();
    return check(id, title, "ok", `${config.clientSecretFile} is readable and not empty`);
  } catch (e) {
    const { message, hint } = errorText(e);
    return check(id, title, "problem", message, {
      fix: [hint ?? `fix ${key ? "client_key_file" : "client_secret_file"} in ${config.path}`],
    });
  }
}

export function tokenCheck(
  ctx: Context,
  s: Setup,
): { check: Check; state: TokenState | undefined; expired: boolean } {
  let now = ctx.now();
  let state: TokenState | undefined;
  try {
    state = s.store.read();
  } catch (e) {
    const { message, hint } = errorText(e);
    return {
      state: undefined,
      expired: true,
      check: check("token", "token", "problem", message, { fix: [hint ?? ""] }),
    };
  }
  // Expiries are the provider's: judged on its clock (../core/provider-clock.ts).
  now = providerTime(state, now).now;
  const renew = renewCommand(s.config, state, now);
  if (state === undefined) {
    const what = s.config.mode === "service-account" ? "no token yet" : "not signed in";
    return {
      state,
      expired: true,
      check: check("token", "token", "problem", `${what} (no token state in ${s.store.file})`, {
        fix: [`run \`${renew}\``],
      }),
    };
  }
  const details: string[] = [];
  const ended = state.session_ended;
  if (ended !== undefined) {
    const at = state.access_token_expires_at;
    return {
      state,
      expired: at === undefined || new Date(at).getTime() <= now.getTime(),
      check: check(
        "token",
        "token",
        "problem",
        `the provider ended the session at ${formatInstant(ended.at)}${ended.description === null ? "" : ` (${ended.description})`}`,
        { fix: ["run `nix-cache-login login`"] },
      ),
    };
  }
  if (s.config.mode === "user") {
    details.push(`refresh token: ${describeRefreshToken(s.config, state, now)}`);
  }
  if (state.access_token === undefined || state.access_token_expires_at === undefined) {
    return {
      state,
      expired: true,
      check: check("token", "token", "problem", "no access token has been written yet", {
        details,
        fix: [`run \`${renew}\``],
      }),
    };
  }
  const expiresAt = new Date(state.access_token_expires_at);
  const expired = expiresAt.getTime() <= now.getTime();
  const summary = `access token ${describeExpiry(expiresAt, now)}`;
  if (!expired) return { state, expired, check: check("token", "token", "ok", summary, { details }) };
  const fix = [`run \`${renew}\``];
  if (noRefreshTokenIssued(s.config, state)) {
    return {
      state,
      expired,
      check: check("token", "token", "problem", `${summary}, and ${noRefreshTokenReason(s.config)}`, {
        details,
        fix: [...fix, noRefreshTokenFix(s.config)],
      }),
    };
  }
  if (s.config.mode === "user" && renew.endsWith("refresh")) {
    fix.push("and keep it fresh with a timer: `nix-cache-login refresh --min-valid 10m` every few minutes");
  } else if (s.config.mode === "service-account") {
    fix.push(
      "and keep it fresh with a timer: `nix-cache-login service-account --min-valid 10m` every few minutes",
    );
  }
  return { state, expired, check: check("token", "token", "problem", summary, { details, fix }) };
}

/**
 * The local clock against the provider's, as measured at the last grant and followed since by the
 * time since boot: a difference above a minute is a wrong clock (or one that moved), which makes
 * every expiry the local clock tells wrong, and the cache refuse tokens it thinks expired.
 */
export function clockCheck(ctx: Context, state: TokenState | undefined): Check {
  const title = "clock";
  const t = providerTime(state, ctx.now());
  if (t.basis === "local") {
    return check("clock", title, "skipped", "no grant measured the provider's clock yet");
  }
  const host = state === undefined ? "the provider" : new URL(state.issuer).host;
  if (Math.abs(t.skewMs) <= CLOCK_SKEW_NOTICE_MS) {
    return check("clock", title, "ok", `the system clock agrees with ${host}'s (within a minute)`);
  }
  return check(
    "clock",
    title,
    "problem",
    `the system clock looks wrong: ${describeSkew(t.skewMs)} (${host})${t.moved ? "; it moved since the last renewal" : ""}`,
    {
      details: [
        `provider's time now (estimated from the last renewal): ${t.now.toISOString()}`,
        "token expiries are judged on the provider's clock, but other programs (and the cache) use theirs",
      ],
      fix: ["set the clock right (`timedatectl set-ntp true`, or your system's time settings)"],
    },
  );
}

/** The netrc file itself: present, readable, parseable, private, owned by us (or root). */
export async function netrcFileCheck(
  config: Config,
  renew: string,
): Promise<{ check: Check; netrc: Netrc | null | undefined }> {
  const path = config.netrcPath;
  const title = "netrc file";
  let st;
  try {
    st = await stat(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") {
      return {
        netrc: null,
        check: check("netrc_file", title, "problem", `${path} does not exist`, { fix: [`run \`${renew}\``] }),
      };
    }
    return {
      netrc: undefined,
      check: check("netrc_file", title, "problem", `${path}: ${code ?? (e as Error).message}`, {
        fix: ["check the file's owner and permissions"],
      }),
    };
  }
  if (!st.isFile()) {
    return {
      netrc: undefined,
      check: check("netrc_file", title, "problem", `${path} is not a regular file`, {
        fix: [`remove it, then run \`${renew}\``],
      }),
    };
  }
  let netrc: Netrc | null;
  try {
    netrc = readNetrc(path);
  } catch (e) {
    const { message, hint } = errorText(e);
    return { netrc: undefined, check: check("netrc_file", title, "problem", message, { fix: [hint ?? ""] }) };
  }
  const mode = st.mode & 0o777;
  // Another user's file was refused by readNetrc above (the read path's trust checks).
  if ((mode & 0o077) !== 0) {
    return {
      netrc,
      check: check(
        "netrc_file",
        title,
        "problem",
        `${path}: mode ${formatMode(mode)}: other users can read the token`,
        {
          fix: [`chmod 600 ${path}`],
        },
      ),
    };
  }
  return {
    netrc,
    check: check(
      "netrc_file",
      title,
      "ok",
      `${path} (mode ${formatMode(mode)}, owner ${describeUid(st.uid)})`,
    ),
  };
}

function describeEntry(e: NetrcEntry): string {
  return e.kind === "default"
    ? `\`default\` on line ${e.line}`
    : `\`machine ${e.machine}\` on line ${e.line}`;
}

/** Which entry curl picks for the cache host, and whether it is ours and first. */
export function netrcEntryCheck(
  config: Config,
  netrc: Netrc,
  renew: string,
  host: string,
): { check: Check; entry: NetrcEntry | undefined } {
  const title = "netrc entry";
  const machine = host.toLowerCase();
  const ours = netrc.entries.filter((e) => e.kind === "machine" && e.machine === machine);
  const first = findEntry(netrc, machine);
  const path = config.netrcPath;
  if (first === undefined) {
    return {
      entry: undefined,
      check: check("netrc_entry", title, "problem", `no entry for ${machine} in ${path}`, {
        fix: [`run \`${renew}\``],
      }),
    };
  }
  if (first.kind === "default") {
    const summary =
      ours.length === 0
        ? `no entry for ${machine}: curl would send the ${describeEntry(first)} instead`
        : `the ${describeEntry(first)} comes before the ${machine} entry on line ${ours[0]?.line}: curl uses the first match, so it sends the default credentials`;
    return {
      entry: first,
      check: check("netrc_entry", title, "problem", summary, {
        fix: [
          `run \`${renew}\` (it writes its entry before \`default\`), or move the ${machine} entry above line ${first.line}`,
        ],
      }),
    };
  }
  if (first.login === undefined || first.login === "") {
    return {
      entry: first,
      check: check(
        "netrc_entry",
        title,
        "problem",
        `the ${machine} entry on line ${first.line} has no login`,
        {
          details: ["password-only entries are ignored by curl 7.82-7.84 and 8.11.1"],
          fix: [`run \`${renew}\` (it writes \`login nix-cache-login\`)`],
        },
      ),
    };
  }
  const later = ours.slice(1).map((e) => e.line);
  return {
    entry: first,
    check: check(
      "netrc_entry",
      title,
      "ok",
      `line ${first.line}: \`machine ${machine} login ${first.login}\`, the first entry that matches ${machine}`,
      {
        details:
          later.length > 0 ? [`curl ignores the later ${machine} entries on line ${later.join(", ")}`] : [],
      },
    ),
  };
}

/** The password curl sends: the token we wrote last, and short enough for curl. */
export function netrcTokenCheck(
  netrc: Netrc,
  entry: NetrcEntry | undefined,
  state: TokenState | undefined,
  renew: string,
  host: string,
): Check {
  const title = "netrc token";
  const machine = host.toLowerCase();
  if (entry === undefined || entry.kind === "default") {
    return check("netrc_token", title, "skipped", `no ${machine} entry comes first (see netrc entry)`);
  }
  if (entry.password === undefined || entry.password === "") {
    return check(
      "netrc_token",
      title,
      "problem",
      `the ${machine} entry on line ${entry.line} has no password`,
      {
        fix: [`run \`${renew}\``],
      },
    );
  }
  const bytes = Buffer.byteLength(entry.password, "latin1");
  if (bytes > CURL_NETRC_MAX_TOKEN) {
    return check(
      "netrc_token",
      title,
      "problem",
      `the token on line ${entry.line} is ${bytes} bytes: curl (>= 8.11.1) drops netrc tokens over ${CURL_NETRC_MAX_TOKEN} bytes and then sends no credentials`,
      {
        fix: [
          "make the access token smaller in Keycloak (fewer roles/groups in it, or a dedicated client scope)",
        ],
      },
    );
  }
  if (state?.access_token === undefined) {
    return check(
      "netrc_token",
      title,
      "skipped",
      `no current token to compare the ${bytes}-byte token with (see token)`,
    );
  }
  if (entry.password !== state.access_token) {
    const holder = netrc.entries.find(
      (e) =>
        e !== entry && e.machine === machine && e.password !== undefined && e.password === state.access_token,
    );
    return check(
      "netrc_token",
      title,
      "problem",
      holder !== undefined
        ? `the first ${machine} entry (line ${entry.line}) holds an old token; the current one is on line ${holder.line}, which curl never reaches`
        : `the ${machine} entry on line ${entry.line} does not hold the token nix-cache-login wrote last (changed by hand or by another tool?)`,
      { fix: [`run \`${renew}\``] },
    );
  }
  return check(
    "netrc_token",
    title,
    "ok",
    `holds the current access token (${bytes} bytes, curl's limit is ${CURL_NETRC_MAX_TOKEN})`,
  );
}

/**
 * curl up to 8.10 (Debian 12's 7.88, and the Nix built on it) does not read a netrc line over
 * 4095 bytes: the entry on it loses its password, silently. An entry written as one line by an
 * older nix-cache-login or by hand can cross it with a large token.
 */
export function netrcLinesCheck(config: Config, netrc: Netrc, renew: string): Check {
  const title = "netrc lines";
  const long: { line: number; bytes: number }[] = [];
  let start = 0;
  for (let n = 1; start < netrc.text.length; n++) {
    const nl = netrc.text.indexOf("\n", start);
    const end = nl === -1 ? netrc.text.length : nl + 1;
    if (end - start > CURL_NETRC_MAX_LINE) long.push({ line: n, bytes: end - start });
    start = end;
  }
  if (long.length === 0) {
    return check("netrc_lines", title, "ok", `no line is over curl's ${CURL_NETRC_MAX_LINE}-byte limit`);
  }
  const ours = config.machines.map((m) => findEntry(netrc, m)).filter((e) => e?.kind === "machine");
  const oursLong = ours.some(
    (e) => e !== undefined && long.some((l) => l.line >= e.line && l.line <= e.line + 2),
  );
  return check(
    "netrc_lines",
    title,
    "problem",
    `${long.map((l) => `line ${l.line} is ${l.bytes} bytes`).join(", ")}: curl up to 8.10 (and the Nix built on it) does not read a netrc line over ${CURL_NETRC_MAX_LINE} bytes: the entry on it gets no password`,
    {
      fix: [
        oursLong
          ? `run \`${renew}\`: nix-cache-login writes its entry with the token on a line of its own`
          : "split that entry over several lines (machine, login and password each on its own line)",
      ],
    },
  );
}

/** `machine host:port` never matches: curl compares the host name only. */
export function netrcMachineCheck(netrc: Netrc, host: string): Check {
  const machine = host.toLowerCase();
  const withPort = netrc.entries.filter(
    (e) =>
      e.kind === "machine" &&
      e.machine !== undefined &&
      e.machine.startsWith(`${machine}:`) &&
      /^\d+$/.test(e.machine.slice(machine.length + 1)),
  );
  if (withPort.length === 0) {
    return check("netrc_machine", "netrc machine", "ok", `no entry names ${machine} with a port`);
  }
  const lines = withPort.map((e) => `\`machine ${e.machine}\` (line ${e.line})`).join(", ");
  return check(
    "netrc_machine",
    "netrc machine",
    "problem",
    `${lines} never matches: curl compares the host name only, without the port`,
    {
      fix: [
        `remove ${withPort.length === 1 ? "that entry" : "those entries"}; nix-cache-login writes \`machine ${machine}\``,
      ],
    },
  );
}
