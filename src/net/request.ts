/**
 * fetch() over node:http and node:https, for the few small requests a renewal makes. Node's own
 * fetch is undici: its first request compiles undici's JavaScript and its WASM HTTP parser, which
 * cost a `refresh` more than everything else it does together (see `npm run bench -- --profile`).
 * The answer is still a WHATWG Response, as openid-client expects.
 *
 * What fetch would do and this does too: TLS with Node's CA store (NODE_EXTRA_CA_CERTS), the
 * request's AbortSignal, a form body's content type. What it need not: redirects are returned,
 * not followed (openid-client asks for `redirect: "manual"`), and no compression is asked for.
 */
import type { IncomingMessage } from "node:http";
import { answerTooLarge, MAX_ANSWER_BYTES } from "./answer-cap.ts";

export function requestFetch(url: string, init: RequestInit): Promise<Response> {
  if (init.redirect === "follow") throw new Error("requestFetch does not follow redirects");
  const u = new URL(url);
  const lib =
    u.protocol === "https:"
      ? process.getBuiltinModule("node:https")
      : u.protocol === "http:"
        ? process.getBuiltinModule("node:http")
        : undefined;
  if (lib === undefined) return Promise.reject(new TypeError(`unsupported URL scheme ${u.protocol}`));
  const headers = new Headers(init.headers);
  let body: string | Uint8Array | undefined;
  if (init.body instanceof URLSearchParams) {
    body = init.body.toString();
    if (!headers.has("content-type")) {
      headers.set("content-type", "application/x-www-form-urlencoded;charset=UTF-8");
    }
  } else if (typeof init.body === "string" || init.body instanceof Uint8Array) {
    body = init.body;
  } else if (init.body !== undefined && init.body !== null) {
    return Promise.reject(new TypeError("requestFetch sends only string, form or byte bodies"));
  }
  if (body !== undefined) headers.set("content-length", String(Buffer.byteLength(body)));
  const method = (init.method ?? "GET").toUpperCase();
  return new Promise((resolve, reject) => {
    const req = lib.request(
      u,
      {
        method,
        headers: Object.fromEntries(headers),
        signal: init.signal ?? undefined,
        // One connection per request, closed after it: a renewal makes one or two, and a kept-alive
        // socket would hold the process open until it times out.
        agent: false,
      },
      (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (c: Buffer) => {
          size += c.length;
          // An endless or huge answer is cut off here, before it costs more than the cap.
          if (size > MAX_ANSWER_BYTES) {
            req.destroy();
            reject(answerTooLarge(method, u));
            return;
          }
          chunks.push(c);
        });
        res.on("error", reject);
        res.on("end", () => {
          const status = res.statusCode ?? 0;
          const nullBody = method === "HEAD" || status === 204 || status === 205 || status === 304;
          const pairs: [string, string][] = [];
          for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) {
            pairs.push([res.rawHeaders[i] as string, res.rawHeaders[i + 1] as string]);
          }
          try {
            const response = new Response(nullBody ? null : Buffer.concat(chunks), {
              status,
              statusText: res.statusMessage ?? "",
              headers: pairs,
            });
            // fetch's Response names the URL it answers; error messages show its host and path.
            Object.defineProperty(response, "url", { value: u.href });
            resolve(response);
          } catch (e) {
            reject(e as Error);
          }
        });
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}
