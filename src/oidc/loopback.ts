/**
 * The loopback redirect server for the browser sign-in (RFC 8252 section 7.3): bound to 127.0.0.1
 * only, it redirects one unguessable, one-time path to the authorization URL (so the terminal shows
 * a short URL) and takes exactly one authorization response at `/callback` whose `state` matches.
 *
 * Any local user can connect to 127.0.0.1: the authorization URL (state, nonce, PKCE challenge)
 * must not be handed to whoever asks first, or another user could sign in with its own account and
 * have it saved as ours. Hence the random path (128 bits), served once; everything else is a bare
 * 404. A Host other than 127.0.0.1:PORT is refused: a web page that rebinds its DNS name to
 * 127.0.0.1 sends its own name.
 *
 * The path alone is not enough: the browser gets the short URL on its command line, which every
 * local user can read in /proc (issue 21). So on Linux a request is answered only when its TCP
 * peer's socket belongs to our own uid (../os/peer-uid.ts); anyone else gets a bare 403, and the
 * sign-in goes on as if nothing happened. macOS has no such table: there the path is the guard.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import * as http from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { CliError } from "../errors.ts";
import { printable } from "../text.ts";
import { peerOwner } from "../os/peer-uid.ts";

export type Logger = (line: string) => void;

export const CALLBACK_PATH = "/callback";

/** The redirect URI an administrator registers for sign-ins on `port`, or on any port. */
export function redirectUriToRegister(port: number | undefined): string {
  return port === undefined
    ? `http://127.0.0.1/* (Keycloak, which then takes any port; elsewhere http://127.0.0.1${CALLBACK_PATH}, any port by RFC 8252 section 7.3)`
    : `http://127.0.0.1:${port}${CALLBACK_PATH}`;
}

export interface Page {
  status: number;
  title: string;
  /** Plain text paragraphs; escaped when rendered. */
  lines: string[];
  ok?: boolean;
}

/** The one authorization response that belongs to this sign-in. */
export type CallbackOutcome =
  | {
      kind: "code";
      /** The callback URL as the provider sent it; it holds the code, so never print or log it. */
      url: URL;
      /** Answers the browser, once the code exchange and the file writes are done. */
      reply(page: Page): Promise<void>;
    }
  | { kind: "error"; error: string; description: string | undefined };

/** What became of a pasted address: the sign-in goes on unless it was accepted. */
export type PasteResult = "accepted" | "not-this-address" | "wrong-state" | "finished";

export class LoopbackServer {
  /** The authorization URL, made when the browser arrives (a pushed request is pushed then). */
  private authorize: (() => Promise<URL>) | undefined;
  private expectedState: Buffer | undefined;
  private settled = false;
  /** The one-time path of the short URL: 128 random bits, base64url. */
  private readonly startPath = `/${randomBytes(16).toString("base64url")}`;
  private startServed = false;
  private deliver!: (outcome: CallbackOutcome) => void;
  private fail!: (e: unknown) => void;
  /** Whether each connection's peer is ours, looked up once per connection. */
  private readonly peers = new WeakMap<Socket, boolean>();
  private unreadableNoted = false;
  /** Requests refused because another local user (or an unknown one) sent them. */
  refusedFromOthers = 0;
  /**
   * Resolves with the first callback whose `state` matches; wrong ones are answered and ignored.
   * Rejects when the authorization URL could not be made (a pushed request the provider refused).
   */
  readonly callback: Promise<CallbackOutcome>;

  private constructor(
    private readonly server: http.Server,
    readonly port: number,
    private readonly log: Logger,
    private readonly warn: Logger,
  ) {
    this.callback = new Promise((resolve, reject) => {
      this.deliver = resolve;
      this.fail = reject;
    });
    // Awaited by the sign-in once the browser is on its way; a rejection before that is no crash.
    this.callback.catch(() => undefined);
  }

  /**
   * Listens on 127.0.0.1 (never a wildcard address): on `port`, or on a free one the system picks.
   * `portFrom` names where a fixed port came from, for the error when it is taken.
   */
  static async listen(
    port: number | undefined,
    portFrom: string,
    log: Logger,
    warn: Logger = log,
  ): Promise<LoopbackServer> {
    const server = http.createServer();
    // A browser keeps connections open; they must not keep the port (or this process) alive.
    server.keepAliveTimeout = 1000;
    await new Promise<void>((resolve, reject) => {
      server.once("error", (e: NodeJS.ErrnoException) => {
        if (e.code === "EADDRINUSE") {
          reject(
            new CliError(
              "port_in_use",
              `port ${port} on 127.0.0.1 is already in use, so the sign-in cannot receive its redirect`,
              {
                hint: `stop the program that uses it, or choose another port (${portFrom}); without a port a free one is picked`,
              },
            ),
          );
        } else if (e.code === "EACCES") {
          reject(
            new CliError("port_not_allowed", `not allowed to listen on port ${port} on 127.0.0.1`, {
              hint: `choose a port above 1023 (${portFrom})`,
            }),
          );
        } else {
          reject(
            new CliError(
              "listen_failed",
              `cannot listen on 127.0.0.1 for the sign-in redirect: ${e.message}`,
              {
                cause: e,
              },
            ),
          );
        }
      });
      server.listen({ port: port ?? 0, host: "127.0.0.1", exclusive: true }, () => resolve());
    });
    // Nobody knows the port before this line returns, so no request can arrive without a handler.
    const self = new LoopbackServer(server, (server.address() as AddressInfo).port, log, warn);
    server.on("request", (req: http.IncomingMessage, res: http.ServerResponse) => self.handle(req, res));
    log(`listening on 127.0.0.1:${self.port} for the redirect`);
    return self;
  }

  /** The short URL shown to the user: it redirects to the authorization URL, once. */
  get url(): string {
    return `http://127.0.0.1:${this.port}${this.startPath}`;
  }

  get redirectUri(): string {
    return `http://127.0.0.1:${this.port}${CALLBACK_PATH}`;
  }

  /** Whether a browser has opened the sign-in URL (and was sent on to the provider). */
  get browserArrived(): boolean {
    return this.startServed;
  }

  /** Arms the server for one sign-in: `authorize` gives the URL to redirect the browser to. */
  expect(authorize: () => Promise<URL>, state: string): void {
    this.authorize = authorize;
    this.expectedState = Buffer.from(state);
  }

  /** Stops listening and drops open connections, so the port is free when this resolves. */
  async close(): Promise<void> {
    if (!this.server.listening) return;
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  /** Whether the request's TCP peer is a socket of our own uid (Linux; elsewhere: yes). */
  private fromUs(socket: Socket): boolean {
    const known = this.peers.get(socket);
    if (known !== undefined) return known;
    const uid = process.getuid?.();
    const owner =
      socket.remoteAddress === undefined || socket.remotePort === undefined || socket.localPort === undefined
        ? "not-found"
        : peerOwner(
            { address: socket.remoteAddress, port: socket.remotePort },
            { address: socket.localAddress ?? "127.0.0.1", port: socket.localPort },
          );
    let ok: boolean;
    if (owner === "unsupported" || uid === undefined) {
      ok = true;
    } else if (owner === "unreadable") {
      ok = false;
      if (!this.unreadableNoted) {
        this.unreadableNoted = true;
        this.warn(
          "cannot tell which local user sent a request to the sign-in server (/proc/net/tcp cannot be read), so it was refused",
        );
      }
    } else if (owner === "not-found") {
      ok = false;
      this.log("refused a request whose sender is not among this machine's TCP sockets (HTTP 403)");
    } else {
      ok = owner.uid === uid;
      // Never which user: the terminal is no place for another user's name, and it changes nothing.
      if (!ok) this.log("refused a request from another local user (HTTP 403); the sign-in goes on");
    }
    this.peers.set(socket, ok);
    return ok;
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (!this.fromUs(req.socket)) {
      this.refusedFromOthers++;
      // Bare: nothing about this sign-in, not even that there is one.
      res.writeHead(403, { "content-length": 0, "cache-control": "no-store", connection: "close" });
      res.end();
      return;
    }
    // Build the URL from our own address, not the Host header: it is the redirect_uri we registered.
    let url: URL;
    try {
      url = new URL(req.url ?? "/", `http://127.0.0.1:${this.port}`);
    } catch {
      void send(res, { status: 400, title: "Bad request", lines: [] });
      return;
    }
    if (req.method !== "GET") {
      void send(res, { status: 405, title: "Method not allowed", lines: [] }, { allow: "GET" });
      return;
    }
    if (!this.hostMatches(req.headers.host)) {
      this.log("refused a request with a foreign Host header (DNS rebinding?)");
      void send(res, { status: 421, title: "Misdirected request", lines: [] });
      return;
    }
    if (this.isStartPath(url.pathname) && this.authorize !== undefined) {
      if (this.startServed || this.settled) {
        // Only someone who knows the path gets here; the URL is for one sign-in only.
        void send(res, {
          status: 410,
          title: "This sign-in link was already used",
          lines: ["Start the sign-in again with `nix-cache-login login` if it did not finish."],
        });
        return;
      }
      this.startServed = true;
      this.authorize().then(
        (to) => {
          this.log(
            "GET of the sign-in URL on the loopback server: redirecting to the authorization endpoint",
          );
          res.writeHead(302, { location: to.href, "cache-control": "no-store", ...SECURITY_HEADERS });
          res.end();
        },
        (e: unknown) => {
          this.settled = true;
          void send(res, {
            status: 502,
            title: "Sign-in failed",
            lines: [
              e instanceof CliError
                ? `nix-cache-login could not start the sign-in: ${e.message}`
                : "nix-cache-login could not start the sign-in.",
              "See the terminal for details. You can close this tab.",
            ],
          }).then(() => this.fail(e));
        },
      );
      return;
    }
    if (url.pathname === CALLBACK_PATH) {
      this.onCallback(url, res);
      return;
    }
    void send(res, { status: 404, title: "Not found", lines: ["There is nothing here."] });
  }

  private onCallback(url: URL, res: http.ServerResponse): void {
    if (this.settled) {
      this.log("ignored a second callback: this sign-in already has its answer");
      void send(res, {
        status: 409,
        title: "Sign-in already finished",
        lines: ["nix-cache-login has already received the answer for this sign-in. You can close this tab."],
      });
      return;
    }
    if (!this.stateMatches(url.searchParams.get("state"))) {
      // Not ours (a stale tab, or a forged request): answer, ignore, and keep waiting for the real one.
      this.log("ignored a callback whose state does not match this sign-in");
      void send(res, {
        status: 400,
        title: "This sign-in response was ignored",
        lines: [
          "It does not belong to the sign-in that nix-cache-login is waiting for (the state parameter does not match).",
          "If you started the sign-in again, finish it in the newest tab.",
        ],
      });
      return;
    }
    this.settled = true;
    const failure = errorOf(url);
    if (failure !== undefined) {
      const { error: shown, description: text } = failure;
      this.log(`the provider answered with an error: ${shown}`);
      void send(res, {
        status: 400,
        title: "Sign-in failed",
        lines: [
          text === undefined
            ? `The identity provider answered: ${shown}.`
            : `The identity provider answered: ${text} (${shown}).`,
          "You can close this tab and return to the terminal.",
        ],
      }).then(() => this.deliver({ kind: "error", error: shown, description: text }));
      return;
    }
    this.log("callback received with a matching state");
    this.deliver({
      kind: "code",
      url,
      reply: (page) => send(res, page, { connection: "close" }),
    });
  }

  /**
   * The address the browser ended on, pasted by the user when the browser cannot reach this
   * machine (kubelogin's authcode-keyboard, oidc-agent's --codeExchange). Checked like a callback
   * (this redirect URI, then the state) and delivered the same way: whichever of the two comes
   * first with the right state wins. It holds the code: never log or print it.
   */
  acceptPasted(text: string): PasteResult {
    if (this.settled) return "finished";
    let url: URL;
    try {
      const trimmed = text.trim();
      // Some browsers hide the scheme in the address bar, and copy without it.
      url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(trimmed) ? trimmed : `http://${trimmed}`);
    } catch {
      return "not-this-address";
    }
    if (`${url.origin}${url.pathname}` !== this.redirectUri) return "not-this-address";
    if (!this.stateMatches(url.searchParams.get("state"))) {
      this.log("ignored a pasted address whose state does not match this sign-in");
      return "wrong-state";
    }
    this.settled = true;
    const failure = errorOf(url);
    if (failure !== undefined) {
      this.log(`the provider answered with an error: ${failure.error}`);
      this.deliver({ kind: "error", ...failure });
    } else {
      this.log("pasted address accepted: its state matches");
      // Nobody waits for an answer page: the browser never reached us.
      this.deliver({ kind: "code", url, reply: () => Promise.resolve() });
    }
    return "accepted";
  }

  /** Compared in constant time: the path is the secret that guards the authorization URL. */
  private isStartPath(path: string): boolean {
    const got = Buffer.from(path);
    const want = Buffer.from(this.startPath);
    return got.length === want.length && timingSafeEqual(got, want);
  }

  /** RFC 9110 section 7.2: the host and port the client meant; ours is 127.0.0.1:PORT, nothing else. */
  private hostMatches(host: string | undefined): boolean {
    return host !== undefined && host.toLowerCase() === `127.0.0.1:${this.port}`;
  }

  private stateMatches(state: string | null): boolean {
    if (state === null || this.expectedState === undefined) return false;
    const got = Buffer.from(state);
    return got.length === this.expectedState.length && timingSafeEqual(got, this.expectedState);
  }
}

/** An authorization error response (RFC 6749 section 4.1.2.1), or one with neither code nor error. */
function errorOf(url: URL): { error: string; description: string | undefined } | undefined {
  const error = url.searchParams.get("error");
  if (error === null && url.searchParams.has("code")) return undefined;
  const description =
    error === null
      ? "the response has neither a code nor an error"
      : (url.searchParams.get("error_description") ?? undefined);
  return {
    error: printable(error ?? "invalid_request"),
    description: description === undefined ? undefined : printable(description),
  };
}

const SECURITY_HEADERS = {
  "referrer-policy": "no-referrer",
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
};

function escapeHtml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c] ?? c,
  );
}

/** A plain, self-contained page: no scripts, no external resources. */
export function renderPage(page: Page): string {
  const accent = page.ok === true ? "#1a7f37" : page.status >= 400 ? "#cf222e" : "#57606a";
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(page.title)} - nix-cache-login</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#24292f;line-height:1.5}
h1{font-size:1.5rem;color:${accent}}
footer{margin-top:2rem;font-size:.85rem;color:#57606a}
</style>
</head>
<body>
<h1>${escapeHtml(page.title)}</h1>
${page.lines.map((l) => `<p>${escapeHtml(l)}</p>`).join("\n")}
<footer>nix-cache-login</footer>
</body>
</html>
`;
}

function send(res: http.ServerResponse, page: Page, extra: Record<string, string> = {}): Promise<void> {
  const body = renderPage(page);
  return new Promise((resolve) => {
    if (res.writableEnded || res.destroyed) {
      resolve();
      return;
    }
    res.writeHead(page.status, {
      "content-type": "text/html; charset=utf-8",
      "content-length": Buffer.byteLength(body),
      "cache-control": "no-store",
      "content-security-policy":
        "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
      ...SECURITY_HEADERS,
      ...extra,
    });
    res.once("error", () => resolve());
    res.once("close", () => resolve());
    res.end(body, () => resolve());
  });
}
