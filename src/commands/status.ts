import type { Context } from "../context.ts";
import { describeExpiry, formatInstant } from "../duration.ts";
import { ExitCode } from "../errors.ts";
import { netrcHolds } from "../netrc/read.ts";
import { renewCommand } from "../core/freshness.ts";
import {
  describeRefreshToken,
  noRefreshTokenFix,
  noRefreshTokenIssued,
  noRefreshTokenReason,
} from "../core/refresh-token.ts";
import { CLOCK_SKEW_NOTICE_MS, describeSkew, providerTime } from "../core/provider-clock.ts";
import { describeEntries, loadSetup } from "../core/setup.ts";
import { oneLine, printable, terminalJson } from "../text.ts";
import { describeRefreshTokenPlace } from "../core/refresh-token-storage.ts";
import { hasRefreshToken } from "../store/state.ts";

export interface StatusOptions {
  json?: boolean | undefined;
}

interface TokenReport {
  present: boolean;
  valid: boolean;
  expires_at: string | null;
  /** Access token only: the expiry is default_token_lifetime's guess, the provider gave none. */
  expiry_assumed?: boolean;
}

/** Local files only: no network, so it is fast and safe to run from prompts and scripts. */
export function status(ctx: Context, opts: StatusOptions): number {
  const s = loadSetup(ctx);
  const { config } = s;
  const state = s.store.read();
  // Expiries are the provider's, judged on its clock (../core/provider-clock.ts).
  const clock = providerTime(state, ctx.now());
  const now = clock.now;
  const clockWrong = Math.abs(clock.skewMs) > CLOCK_SKEW_NOTICE_MS;
  // The clock moved and only the access token's `iat` says by at least how much: any verdict
  // would be a guess, so none is given (a `refresh` measures the clock again).
  const guess = clock.basis === "issued";
  const {
    exists: netrcExists,
    holds: netrcEntry,
    byHost,
  } = netrcHolds(config.netrcPath, config.machines, state?.access_token);

  const report = (present: boolean, expiresAt: string | null | undefined): TokenReport => {
    const at = expiresAt ?? null;
    return {
      present,
      valid: present && !guess && (at === null ? false : new Date(at).getTime() > now.getTime()),
      expires_at: at,
    };
  };
  const access = report(state?.access_token !== undefined, state?.access_token_expires_at);
  const assumed = access.present && state?.access_token_expiry_assumed === true;
  access.expiry_assumed = assumed;
  const refreshToken = report(hasRefreshToken(state), state?.refresh_token_expires_at);
  // A refresh token whose expiry is unknown is usable until the provider says otherwise.
  if (refreshToken.present && refreshToken.expires_at === null) refreshToken.valid = true;
  // ...and once the provider said so (invalid_grant on refresh), it is not, whatever its expiry.
  const ended = state?.session_ended;
  if (ended !== undefined) refreshToken.valid = false;
  const notIssued = noRefreshTokenIssued(config, state);
  // Only a new sign-in helps then, even while the access token in the netrc lasts.
  const ok = access.valid && netrcEntry && !(config.mode === "user" && ended !== undefined);

  if (opts.json === true) {
    const out = {
      config_path: config.path,
      issuer: config.issuer,
      client_id: config.clientId,
      cache_host: config.cacheHosts[0]?.host,
      cache_hosts: config.cacheHosts.map((h) => h.host),
      netrc_path: config.netrcPath,
      state_path: s.store.file,
      mode: config.mode,
      username: state?.username ?? null,
      netrc_entry: netrcEntry,
      netrc_entries: Object.fromEntries(byHost),
      access_token: access,
      clock: {
        skew_seconds: Math.round(clock.skewMs / 1000),
        looks_wrong: clockWrong,
        moved: clock.moved,
      },
      refresh_token: {
        ...refreshToken,
        offline: refreshToken.present && state?.refresh_token_offline === true,
        // The provider issues this client no refresh token: only a sign-in renews the access token.
        not_issued: notIssued,
        session_ended: ended === undefined ? null : { at: ended.at, description: ended.description },
        stored_in: !refreshToken.present
          ? null
          : state?.refresh_token_in === "keychain"
            ? "keychain"
            : "file",
        file_reason: state?.refresh_token_file_reason ?? null,
      },
    };
    ctx.stdout.write(`${terminalJson(out, 2)}\n`);
    return ok ? ExitCode.ok : ExitCode.loginRequired;
  }

  const lines: [string, string][] = [
    ["config", `${config.path} (${config.source})`],
    ["issuer", config.issuer],
    ["client", `${config.clientId} (${config.mode === "user" ? "user sign-in" : "service account"})`],
    [
      config.cacheHosts.length === 1 ? "cache host" : "cache hosts",
      config.cacheHosts.map((h) => h.host).join(", "),
    ],
    ["netrc", `${config.netrcPath}: ${netrcExists ? describeNetrcEntries(byHost) : "missing"}`],
  ];
  if (clockWrong) {
    lines.push([
      "clock",
      `the system clock looks wrong by ${describeSkew(clock.skewMs)}${guess ? ": cannot tell whether the token is valid" : "; expiries below are on the provider's clock"}`,
    ]);
  }
  // Stored from the provider's answer: shown without control characters, whatever wrote it.
  if (state?.username !== undefined) lines.push(["signed in as", printable(state.username, 100)]);
  lines.push([
    "access token",
    !access.present
      ? "none"
      : guess
        ? "unknown (the clock moved; run `nix-cache-login refresh`)"
        : `${describeExpiry(access.expires_at, now)}${assumed ? " (assumed: the provider gave no lifetime, so default_token_lifetime applies)" : ""}`,
  ]);
  if (config.mode === "user") {
    lines.push([
      "refresh token",
      ended !== undefined
        ? `the provider ended the session at ${printable(formatInstant(ended.at), 100)}${ended.description === null ? "" : ` (${printable(ended.description)})`}; run \`nix-cache-login login\``
        : state === undefined
          ? "none"
          : refreshToken.present
            ? `${describeRefreshToken(config, state, now)}, ${describeRefreshTokenPlace(state, ctx.env)}`
            : describeRefreshToken(config, state, now),
    ]);
  }
  const width = Math.max(...lines.map(([k]) => k.length));
  // The values are the configuration's (issuer, client_id, paths) and the state's: one line each,
  // without control characters, whatever wrote them.
  ctx.stdout.write(lines.map(([k, v]) => `${`${k}:`.padEnd(width + 2)}${oneLine(v)}\n`).join(""));
  if (!ok || ended !== undefined) {
    const why =
      notIssued && !access.valid ? ` (${noRefreshTokenReason(config)}; ${noRefreshTokenFix(config)})` : "";
    ctx.stderr.write(`hint: ${oneLine(`run \`${renewCommand(config, state, now)}\`${why}`)}\n`);
  }
  return ok ? ExitCode.ok : ExitCode.loginRequired;
}

/** One host: as before; several: which hold the current token and which do not. */
function describeNetrcEntries(byHost: Map<string, boolean>): string {
  const hosts = [...byHost.keys()];
  const holding = hosts.filter((h) => byHost.get(h) === true);
  const lacking = hosts.filter((h) => byHost.get(h) !== true);
  const parts: string[] = [];
  if (holding.length > 0)
    parts.push(
      `the ${describeEntries(holding)} ${holding.length === 1 ? "holds" : "hold"} the current token`,
    );
  if (lacking.length > 0) parts.push(`no entry for ${lacking.join(", ")} with the current token`);
  return parts.join("; ");
}
