import { createInterface } from "node:readline";
import { checkBrowserCommand, openBrowser } from "../os/browser.ts";
import type { Env } from "../os/env.ts";
import { prompt, say, verbose, warn, type Context } from "../context.ts";
import { badDuration, describeExpiry, formatInstant, formatSpan, parseDuration } from "../duration.ts";
import {
  describeRefreshToken,
  noRefreshTokenFix,
  noRefreshTokenIssued,
  noRefreshTokenReason,
} from "../core/refresh-token.ts";
import { CliError, ExitCode } from "../errors.ts";
import { deviceSignIn } from "../oidc/device.ts";
import { signInDenied, signInTimedOut } from "../oidc/sign-in-errors.ts";
import { LoopbackServer, redirectUriToRegister, type CallbackOutcome, type Page } from "../oidc/loopback.ts";
import type { Provider } from "../oidc/provider.ts";
import { checkDpopRequired } from "../oidc/dpop-check.ts";
import type { TokenSet } from "../oidc/token-set.ts";
import { printable } from "../text.ts";
import { setLongTimeout } from "../net/timers.ts";
import { recordTokens } from "../core/result.ts";
import { describeEntries, loadSetup, lockOptions, type Setup } from "../core/setup.ts";
import { CorruptStateError, hasRefreshToken } from "../store/state.ts";
import { readStateOrSetAside, withStateLock } from "../store/write.ts";
import { checkRoomToSave, provider, saveTokens } from "../core/save-tokens.ts";
import { providerTime } from "../core/provider-clock.ts";

export const DEFAULT_LOGIN_TIMEOUT = "5m";

export interface LoginOptions {
  device?: boolean | undefined;
  /** false with --no-browser. */
  browser?: boolean | undefined;
  browserCommand?: string | undefined;
  port?: string | undefined;
  timeout?: string | undefined;
}

/**
 * Signs the user in: in a browser (authorization code + PKCE on a loopback redirect), or with a
 * device code (RFC 8628) where no local browser can be used. Nothing is written unless the sign-in
 * completed; then the tokens are saved and the netrc entry is written.
 */
export async function login(ctx: Context, opts: LoginOptions): Promise<number> {
  const log = verbose(ctx);
  const waitSeconds = parseDuration(opts.timeout ?? DEFAULT_LOGIN_TIMEOUT, "--timeout");
  if (waitSeconds <= 0) {
    throw badDuration("--timeout: must be greater than zero");
  }
  const flagPort = opts.port === undefined ? undefined : parsePort(opts.port);
  if (opts.browserCommand !== undefined) checkBrowserCommand(opts.browserCommand);

  const s = loadSetup(ctx);
  if (s.config.mode === "service-account") {
    throw new CliError(
      "not_user_config",
      `${s.config.path}: client_secret_file is set, so this configuration is for a service account`,
      {
        exitCode: ExitCode.usage,
        hint: "use `nix-cache-login service-account`, or remove client_secret_file to sign in as a user",
      },
    );
  }
  signedInAlready(ctx, s);
  // token_storage = "keychain" with no keychain here, or a locked one, fails now, not after the
  // browser sign-in; so does a disk without room for the token state or the netrc.
  await s.vault.preflightSignIn();
  await checkRoomToSave(s);
  // A sign-in is rare and interactive: always ask the provider for a fresh discovery document.
  const p = provider(ctx, s, undefined);
  const host = p.host;

  const envBrowser = (ctx.env.BROWSER ?? "").trim() === "" ? undefined : ctx.env.BROWSER;
  const browserCommand = opts.browserCommand ?? envBrowser;
  let useDevice = opts.device === true;
  let launch = opts.browser !== false;
  if (!useDevice && launch && browserCommand === undefined && flagPort === undefined) {
    const why = noLocalBrowser(ctx.env);
    if (why !== undefined) {
      if ((await p.deviceEndpoint()) !== undefined) {
        prompt(
          ctx,
          `${why}: signing in with a device code instead (--no-browser keeps the browser sign-in).`,
        );
        useDevice = true;
      } else {
        prompt(
          ctx,
          `${why}, and ${host} offers no device sign-in: open the URL below in a browser${ctx.stdin?.isTTY === true ? "" : " that reaches this machine"}.`,
        );
        launch = false;
      }
    }
  }

  let tokens: TokenSet;
  if (useDevice) {
    tokens = (await deviceSignIn(ctx, p, { timeoutSeconds: waitSeconds, log })).tokens;
    await save(ctx, s, tokens, p);
  } else {
    tokens = await browserSignIn(ctx, s, p, {
      port: flagPort ?? s.config.callbackPort,
      portFrom: flagPort !== undefined ? "--port" : `callback_port in ${s.config.path}`,
      launch,
      browserCommand,
      commandFrom: opts.browserCommand !== undefined ? "--browser-command" : "$BROWSER",
      waitSeconds,
    });
  }

  // The expiries are on the provider's clock; so is the time they are told against.
  const now = new Date(tokens.receivedAt.getTime() + (tokens.clockOffsetMs ?? 0));
  say(ctx, `Signed in as ${tokens.username ?? "(unknown user)"} at ${host}.`);
  say(ctx, `  access token:  ${describeExpiry(tokens.accessExpiresAt, now)}`);
  const saved = s.store.read();
  if (saved !== undefined) say(ctx, `  refresh token: ${describeRefreshToken(s.config, saved, now)}`);
  say(ctx, `Wrote the ${describeEntries(s.config.machines)} in ${s.config.netrcPath}.`);
  if (noRefreshTokenIssued(s.config, saved)) {
    warn(ctx, `${noRefreshTokenReason(s.config)}; ${noRefreshTokenFix(s.config)}`);
  }
  recordTokens(ctx, s.config, saved, "signed_in");
  return ExitCode.ok;
}

/** Says who is signed in, and until when, before a new sign-in replaces that session. */
function signedInAlready(ctx: Context, s: Setup): void {
  let state;
  try {
    state = s.store.read();
  } catch (e) {
    // A corrupt state is set aside when the new tokens are saved (see save()).
    if (e instanceof CorruptStateError) return;
    throw e;
  }
  if (state === undefined || (state.access_token === undefined && !hasRefreshToken(state))) return;
  const now = providerTime(state, ctx.now()).now;
  const until = (at: string | null | undefined) =>
    at === undefined || at === null ? "an unknown time" : printable(formatInstant(at), 100);
  const refreshEnd = state.refresh_token_expires_at;
  // An ended or expired session cannot be renewed: offering a time for it would be wrong.
  const sessionEnd = !hasRefreshToken(state)
    ? "no refresh token"
    : state.session_ended !== undefined
      ? `the provider ended the session (seen at ${until(state.session_ended.at)})`
      : refreshEnd !== null && refreshEnd !== undefined && Date.parse(refreshEnd) <= now.getTime()
        ? `the session expired at ${until(refreshEnd)}`
        : `the session can be renewed until ${until(refreshEnd)}`;
  prompt(
    ctx,
    `Already signed in as ${state.username ?? "(unknown user)"} at ${s.config.issuer}: access token ${describeExpiry(state.access_token_expires_at ?? null, now)}, ${sessionEnd}. Starting a new sign-in, which replaces it.`,
  );
}

interface BrowserSignInOptions {
  port: number | undefined;
  portFrom: string;
  launch: boolean;
  browserCommand: string | undefined;
  commandFrom: "--browser-command" | "$BROWSER";
  waitSeconds: number;
}

async function browserSignIn(
  ctx: Context,
  s: Setup,
  p: Provider,
  o: BrowserSignInOptions,
): Promise<TokenSet> {
  const log = verbose(ctx);
  // Bind first (a taken port fails fast) while discovery runs.
  const [bound, discovered] = await Promise.allSettled([
    LoopbackServer.listen(o.port, o.portFrom, log, (line) => warn(ctx, line)),
    p.metadata(),
  ]);
  if (bound.status === "rejected") throw bound.reason;
  const server = bound.value;
  try {
    if (discovered.status === "rejected") throw discovered.reason;
    // A provider that does not know the client or the redirect URI shows an error page in the
    // browser and never comes back: find that out now, not at the timeout. The same request says
    // whether it must be pushed (RFC 9126); then, for a client the provider knows, a placeholder
    // code exchange whether its tokens would need a DPoP proof.
    const check = await p.checkClient(server.redirectUri, redirectUriToRegister(o.port));
    await checkDpopRequired(p, server.redirectUri);
    const request = await p.authorizationRequest(server.redirectUri, { pushed: check === "par_required" });
    server.expect(() => request.authorize(), request.state);
    log(
      `authorization endpoint ${request.endpoint}${request.pushed ? " (pushed request)" : ""}, redirect URI ${server.redirectUri}`,
    );
    // Checking the ID token's signature needs the provider's keys: fetch them while the user signs in.
    // What failed may quote the provider's answer (a JSON parse error quotes the body).
    p.prefetchSigningKeys().catch((e: unknown) =>
      log(`could not fetch the signing keys ahead: ${printable(String(e))}`),
    );

    if (o.launch) {
      prompt(ctx, `Opening a browser to sign in. If your browser did not open, visit: ${server.url}`);
      await openBrowser(server.url, {
        command: o.browserCommand,
        commandFrom: o.commandFrom,
        env: ctx.env,
        showOutput: ctx.verbose,
        log,
        warn: (line) => warn(ctx, line),
      });
    } else {
      prompt(ctx, `To sign in, open this URL in a browser: ${server.url}`);
    }
    prompt(ctx, `Waiting up to ${formatSpan(o.waitSeconds)} for the sign-in (Ctrl-C to cancel)...`);

    const stopPasting = ctx.stdin?.isTTY === true ? acceptPastedAddresses(ctx, ctx.stdin, server) : undefined;
    let outcome: CallbackOutcome;
    try {
      // A browser that runs as another user (the CLI under sudo) is refused: say so, once it matters.
      outcome = await waitFor(server.callback, ctx.signal, o.waitSeconds, () =>
        signInTimeout(p.host, o.waitSeconds, server.browserArrived, server.refusedFromOthers > 0),
      );
    } finally {
      stopPasting?.();
    }
    if (outcome.kind === "error") throw signInFailed(p.host, outcome.error, outcome.description);

    let tokens: TokenSet;
    try {
      tokens = await p.exchangeCode(outcome.url, request);
      await save(ctx, s, tokens, p);
    } catch (e) {
      await outcome.reply(failurePage(e));
      throw e;
    }
    await outcome.reply({
      status: 200,
      ok: true,
      title: "Signed in",
      lines: [
        `nix-cache-login is signed in${tokens.username === undefined ? "" : ` as ${tokens.username}`} and has written the token for ${s.config.machines.join(", ")}.`,
        "You can close this tab.",
      ],
    });
    return tokens;
  } finally {
    await server.close();
    log("closed the loopback server");
  }
}

/** An error answer (RFC 6749 4.1.2.1) to the authorization request, at the callback or before. */
function signInFailed(host: string, error: string, description: string | undefined): CliError {
  const detail = description === undefined ? error : `${description} (${error})`;
  const hint = "run `nix-cache-login login` to try again";
  if (error === "access_denied")
    return signInDenied(`the sign-in was denied at ${host}: ${detail}`, { hint });
  return new CliError("sign_in_failed", `the sign-in failed at ${host}: ${detail}`, { hint });
}

/**
 * Over SSH the browser often runs on another machine and its redirect to 127.0.0.1 goes nowhere:
 * the user pastes the address it ended on instead, racing the loopback listener. Lines are read as
 * the terminal hands them over (it echoes them as typed); we never print or log them.
 * Returns the function that stops reading.
 */
function acceptPastedAddresses(
  ctx: Context,
  input: NodeJS.ReadableStream,
  server: LoopbackServer,
): () => void {
  prompt(ctx, "If the browser cannot reach this machine, paste the address it ends on here:");
  const lines = createInterface({ input, terminal: false, crlfDelay: Infinity });
  lines.on("line", (line) => {
    if (line.trim() === "") return;
    const result = server.acceptPasted(line);
    if (result === "not-this-address") {
      prompt(
        ctx,
        `That is not the address this sign-in waits for (it starts with ${server.redirectUri}?); still waiting.`,
      );
    } else if (result === "wrong-state") {
      prompt(ctx, "That address belongs to another sign-in (its state does not match); still waiting.");
    }
  });
  return () => {
    lines.close();
    // A paused terminal no longer keeps the process alive.
    input.pause();
  };
}

/** Saves under the state lock, so a timer's `refresh` running meanwhile cannot overwrite the new session. */
async function save(ctx: Context, s: Setup, tokens: TokenSet, p: Provider): Promise<void> {
  await withStateLock(
    s.store,
    async () => {
      // Who was signed in before, if anyone. A corrupt state must not lock the user out: it is set
      // aside (kept, 0600) and the sign-in starts afresh.
      const before = await readStateOrSetAside(s.store, (line) => warn(ctx, line));
      try {
        await saveTokens(ctx, s, undefined, tokens, p, "user");
      } catch (e) {
        if (s.vault.refusedSignIn(e)) await revokeUnsaved(ctx, p, tokens);
        throw e;
      }
      // The new sign-in keeps no refresh token in the keychain (none issued, or token_storage
      // changed): the old session's item goes.
      if (before?.refresh_token_in === "keychain" && s.store.read()?.refresh_token_in !== "keychain") {
        await s.vault.forget(before).catch((e: unknown) => warn(ctx, (e as Error).message));
      }
      const change = accountChange(before, tokens);
      if (change !== undefined) warn(ctx, change);
      const first = firstAccount(before, tokens);
      if (first !== undefined) prompt(ctx, first);
    },
    lockOptions(ctx, s.config),
  );
}

/**
 * The keychain refused the new sign-in's refresh token and nothing was saved: the token the provider
 * just issued is revoked (RFC 7009), so no session is left open that nothing here can end.
 */
async function revokeUnsaved(ctx: Context, p: Provider, tokens: TokenSet): Promise<void> {
  if (tokens.refreshToken === undefined) return;
  try {
    await p.revoke(tokens.refreshToken);
    say(ctx, "Revoked the refresh token just issued: nothing of this sign-in was saved.");
  } catch (e) {
    warn(
      ctx,
      `could not revoke the refresh token just issued: ${(e as Error).message}; it was saved nowhere and ends with the session at ${p.host}`,
    );
  }
}

/**
 * A different account than before is worth a line: a sign-in another local user completed with its
 * own account would otherwise go unnoticed (the netrc then holds that account's token).
 */
export function accountChange(
  before: { subject?: string | undefined; username?: string | undefined } | undefined,
  now: { subject?: string | undefined; username?: string | undefined },
): string | undefined {
  if (before === undefined) return undefined;
  const differs =
    before.subject !== undefined && now.subject !== undefined
      ? before.subject !== now.subject
      : before.username !== undefined && now.username !== undefined && before.username !== now.username;
  if (!differs) return undefined;
  const name = (a: { subject?: string | undefined; username?: string | undefined }) =>
    a.username ?? (a.subject === undefined ? "(unknown user)" : printable(a.subject, 100));
  return `signed in as ${name(now)}, a different account than before (${name(before)}); the netrc now holds the token of ${name(now)}`;
}

/**
 * With no earlier account to compare with, a sign-in completed by someone else with their own
 * account could only be noticed by its name: show it where it cannot be missed.
 */
export function firstAccount(
  before: { subject?: string | undefined; username?: string | undefined } | undefined,
  now: { subject?: string | undefined; username?: string | undefined },
): string | undefined {
  if (before?.subject !== undefined || before?.username !== undefined) return undefined;
  const name = now.username ?? (now.subject === undefined ? undefined : printable(now.subject, 100));
  if (name === undefined) return undefined;
  return `>>> First sign-in here: the netrc now holds the token of the account ${JSON.stringify(name)}. If that is not you, run \`nix-cache-login logout\` now. <<<`;
}

function failurePage(e: unknown): Page {
  return {
    status: 500,
    title: "Sign-in failed",
    lines: [
      e instanceof CliError
        ? `nix-cache-login could not finish the sign-in: ${e.message}`
        : "nix-cache-login could not finish the sign-in.",
      "See the terminal for details. You can close this tab.",
    ],
  };
}

/**
 * Nothing came back in time. When the browser went on to the provider, its page is where the
 * sign-in stopped, and it may show why: Keycloak keeps a disabled account ("Account is disabled,
 * contact your administrator."), a locked one, or a required action there and never redirects
 * back, so that is no reason to hurry the user.
 */
function signInTimeout(
  host: string,
  seconds: number,
  browserArrived: boolean,
  refusedFromOthers: boolean,
): CliError {
  if (refusedFromOthers) {
    return signInTimedOut(`timed out after ${formatSpan(seconds)} waiting for the sign-in in the browser`, {
      hint: "requests from another local user were refused meanwhile: open the URL in a browser that runs as the same user as nix-cache-login, and run `nix-cache-login login` again",
    });
  }
  if (browserArrived) {
    return signInTimedOut(
      `no answer from the sign-in at ${host} within ${formatSpan(seconds)}: the browser went to its page but did not come back`,
      {
        hint: `if that page shows an error (such as a disabled account), ask the administrator of ${host}; otherwise run \`nix-cache-login login\` again (--timeout 10m allows more time)`,
      },
    );
  }
  return signInTimedOut(`timed out after ${formatSpan(seconds)}: no browser opened the sign-in address`, {
    hint: "open the address printed above in a browser that reaches this machine, or use `nix-cache-login login --device`; --timeout 10m allows more time",
  });
}

/** Resolves with the promise, or rejects on the deadline or when the signal aborts (Ctrl-C). */
function waitFor<T>(
  promise: Promise<T>,
  signal: AbortSignal,
  seconds: number,
  timedOut: () => CliError,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const done = () => {
      cancelTimer();
      signal.removeEventListener("abort", onAbort);
    };
    const onAbort = () => {
      done();
      reject(new CliError("interrupted", "interrupted", { exitCode: ExitCode.interrupted }));
    };
    const cancelTimer = setLongTimeout(() => {
      done();
      reject(timedOut());
    }, seconds * 1000);
    if (signal.aborted) {
      onAbort();
      return;
    }
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (v) => {
        done();
        resolve(v);
      },
      (e: unknown) => {
        done();
        reject(e as Error);
      },
    );
  });
}

function parsePort(text: string): number {
  const port = /^\d{1,5}$/.test(text.trim()) ? Number(text.trim()) : NaN;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new CliError("bad_port", `--port: ${JSON.stringify(text)} is not a port number (1-65535)`, {
      exitCode: ExitCode.usage,
    });
  }
  return port;
}

/**
 * Why a browser on this machine cannot be used, or undefined when one probably can: an SSH session,
 * or Linux (and the BSDs) without a graphical display. WSL opens the Windows browser.
 */
export function noLocalBrowser(env: Env, platform: NodeJS.Platform = process.platform): string | undefined {
  if (nonEmpty(env.SSH_CONNECTION) || nonEmpty(env.SSH_CLIENT) || nonEmpty(env.SSH_TTY))
    return "This is an SSH session";
  if (platform === "darwin" || platform === "win32" || platform === "android") return undefined;
  if (nonEmpty(env.WSL_DISTRO_NAME) || nonEmpty(env.WSL_INTEROP)) return undefined;
  if (!nonEmpty(env.DISPLAY) && !nonEmpty(env.WAYLAND_DISPLAY))
    return "There is no display (DISPLAY and WAYLAND_DISPLAY are unset)";
  return undefined;
}

function nonEmpty(v: string | undefined): boolean {
  return v !== undefined && v !== "";
}
