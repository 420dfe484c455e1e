/**
 * The most we read of any answer from a provider or a cache. The largest honest answers (a
 * discovery document, a key set, a token response with a big access token) are a few KiB; a
 * hostile or broken server could send gigabytes, or never stop.
 */
import { CliError } from "../errors.ts";

export const MAX_ANSWER_BYTES = 1024 * 1024;
const CAP = "1 MiB";

/** One line: which host, which endpoint, and the cap. */
export function answerTooLarge(method: string, url: URL): CliError {
  return new CliError(
    "answer_too_large",
    `${url.host} sent more than ${CAP} in answer to ${method} ${url.pathname}; nix-cache-login reads at most ${CAP} of an answer and stopped reading`,
    {
      hint: "check that the URL in the configuration points at the right server; a proxy or a broken server may be sending something else",
    },
  );
}

/**
 * The answer with its body read into memory, at most MAX_ANSWER_BYTES of it: a longer body is
 * cancelled as soon as it crosses the cap, so an endless one ends too.
 */
export async function boundedResponse(response: Response, method: string, url: URL): Promise<Response> {
  const nullBody = [101, 204, 205, 304].includes(response.status);
  if (response.body === null || nullBody || response.status < 200 || response.status > 599) return response;
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > MAX_ANSWER_BYTES) {
      await reader.cancel().catch(() => undefined);
      throw answerTooLarge(method, url);
    }
    chunks.push(value);
  }
  const bounded = new Response(Buffer.concat(chunks), {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  });
  Object.defineProperty(bounded, "url", { value: response.url === "" ? url.href : response.url });
  return bounded;
}
