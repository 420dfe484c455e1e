/**
 * Proxy support, loaded only when a proxy variable is set: Node 20's fetch ignores HTTPS_PROXY and
 * NO_PROXY, and undici's EnvHttpProxyAgent reads them the way curl does. undici is a file of its
 * own (dist/vendor/undici.cjs), imported only from here, so that a renewal without a proxy never
 * parses it.
 */
import { EnvHttpProxyAgent, fetch as undiciFetch } from "undici";

const agent = new EnvHttpProxyAgent();

export function proxyFetch(url: string, init: RequestInit): Promise<Response> {
  return undiciFetch(url, { ...(init as object), dispatcher: agent }) as unknown as Promise<Response>;
}
