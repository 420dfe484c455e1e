/**
 * A hostile (or compromised) OpenID Provider for the threat-model tests: a plain HTTP server on
 * 127.0.0.1 that serves a discovery document and answers the token, device, logout and key-set
 * endpoints with whatever a test tells it to, including what no honest provider would send (a
 * token with a newline in it, a control-character user code, an interval of a millisecond, a 307
 * from the logout endpoint). It records every request, so a test can prove one was never made.
 *
 * Deliberately not oidc-provider: that one is certified and refuses to misbehave.
 */
import * as http from "node:http";
import type { AddressInfo } from "node:net";

export interface HostileRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface Answer {
  status?: number;
  headers?: Record<string, string>;
  /** A string is sent as is (it may be broken JSON); anything else as JSON. */
  body?: unknown;
  /**
   * After `body` (a string), `size` more bytes of `fill`, or an endless stream of it (until the
   * client goes away): the oversized answers of issue 20.
   */
  padding?: { fill: string; size: number | "endless" };
}

/** Writes `body` and its padding in 64 KiB chunks, minding backpressure. */
export function sendPadded(res: http.ServerResponse, body: string, padding: Answer["padding"]): void {
  if (padding === undefined) {
    res.end(body);
    return;
  }
  const chunk = Buffer.from(padding.fill.repeat(Math.ceil(65536 / padding.fill.length)).slice(0, 65536));
  let left = padding.size === "endless" ? Infinity : padding.size;
  res.write(body);
  const pump = (): void => {
    while (left > 0 && !res.destroyed) {
      const n = Math.min(left, chunk.length);
      left -= n;
      if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
        res.once("drain", pump);
        return;
      }
    }
    if (!res.destroyed) res.end();
  };
  res.on("error", () => undefined);
  pump();
}

export type Handler = (req: HostileRequest) => Answer;

export interface HostileProvider {
  issuer: string;
  port: number;
  requests: HostileRequest[];
  count(pathSuffix: string): number;
  /** Replaces the answer of one endpoint (a path under the issuer, e.g. "/token"). */
  on(path: string, handler: Handler): void;
  /** Fields merged into the discovery document (undefined removes one). */
  metadata: Record<string, unknown>;
  /** The discovery document as served now. */
  discovery(): Record<string, unknown>;
  /** Undoes what `on` set for `path`: the endpoint answers as it did at the start again. */
  off(path: string): void;
  stop(): Promise<void>;
}

/** A plain recording server: a proxy, or the place a redirect points to. Answers 502 to everything. */
export interface Recorder {
  url: string;
  port: number;
  requests: HostileRequest[];
  stop(): Promise<void>;
}

async function listen(
  handle: (req: HostileRequest, res: http.ServerResponse) => void,
): Promise<{ server: http.Server; port: number }> {
  const server = http.createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8").on("data", (d: string) => (body += d));
    req.on("end", () =>
      handle({ method: req.method ?? "GET", path: req.url ?? "/", headers: req.headers, body }, res),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, port: (server.address() as AddressInfo).port };
}

function stopper(server: http.Server): () => Promise<void> {
  return () =>
    new Promise((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
}

export async function startRecorder(): Promise<Recorder> {
  const requests: HostileRequest[] = [];
  const { server, port } = await listen((req, res) => {
    requests.push(req);
    res.writeHead(502, { "content-type": "text/plain" }).end("recorder: not a real server\n");
  });
  return { url: `http://127.0.0.1:${port}`, port, requests, stop: stopper(server) };
}

const REALM = "/realms/hostile";

export async function startHostileProvider(): Promise<HostileProvider> {
  const requests: HostileRequest[] = [];
  const handlers = new Map<string, Handler>();
  let issuer = "";
  const metadata: Record<string, unknown> = {};
  const discovery = (): Record<string, unknown> => {
    const doc: Record<string, unknown> = {
      issuer,
      authorization_endpoint: `${issuer}/auth`,
      token_endpoint: `${issuer}/token`,
      device_authorization_endpoint: `${issuer}/device`,
      end_session_endpoint: `${issuer}/logout`,
      jwks_uri: `${issuer}/certs`,
      response_types_supported: ["code"],
      subject_types_supported: ["public"],
      id_token_signing_alg_values_supported: ["RS256"],
      grant_types_supported: [
        "authorization_code",
        "refresh_token",
        "client_credentials",
        "urn:ietf:params:oauth:grant-type:device_code",
      ],
      ...metadata,
    };
    for (const [k, v] of Object.entries(doc)) if (v === undefined) delete doc[k];
    return doc;
  };
  handlers.set("/token", () => ({
    body: { access_token: "hostile-access-token-1", token_type: "Bearer", expires_in: 300 },
  }));
  handlers.set("/certs", () => ({ body: { keys: [] } }));
  // A login page, as for any authorization request (the CLI asks before it opens a browser).
  handlers.set("/auth", () => ({
    headers: { "content-type": "text/html" },
    body: "<!DOCTYPE html><title>Sign in</title><form></form>",
  }));
  handlers.set("/logout", () => ({ status: 204 }));
  const defaults = new Map(handlers);

  const { server, port } = await listen((req, res) => {
    requests.push(req);
    const path = req.path.replace(/\?.*/, "");
    let answer: Answer;
    if (path.startsWith(REALM) && handlers.has(path.slice(REALM.length)))
      answer = (handlers.get(path.slice(REALM.length)) as Handler)(req);
    else if (path === `${REALM}/.well-known/openid-configuration`) answer = { body: discovery() };
    else answer = { status: 404, body: { error: "not_found" } };
    const body =
      answer.body === undefined
        ? ""
        : typeof answer.body === "string"
          ? answer.body
          : JSON.stringify(answer.body);
    res.writeHead(answer.status ?? 200, {
      "content-type": "application/json",
      "cache-control": "no-store",
      ...answer.headers,
    });
    sendPadded(res, body, answer.padding);
  });
  issuer = `http://127.0.0.1:${port}${REALM}`;
  return {
    issuer,
    port,
    requests,
    metadata,
    count: (suffix) => requests.filter((r) => r.path.replace(/\?.*/, "").endsWith(suffix)).length,
    on: (path, handler) => handlers.set(path, handler),
    off: (path) => {
      const answer = defaults.get(path);
      if (answer === undefined) handlers.delete(path);
      else handlers.set(path, answer);
    },
    discovery,
    stop: stopper(server),
  };
}
