/**
 * Proxy support, loaded only when a proxy variable is set: Node 20's fetch ignores HTTPS_PROXY and
 * NO_PROXY, and undici's EnvHttpProxyAgent reads them the way curl does. Built as a separate file
 * (dist/proxy.mjs) so that the timers' common case does not parse undici at every start.
 */
import { EnvHttpProxyAgent, fetch as undiciFetch } from "undici";

const agent = new EnvHttpProxyAgent();

export function proxyFetch(url: string, init: RequestInit): Promise<Response> {
  return undiciFetch(url, { ...(init as object), dispatcher: agent }) as unknown as Promise<Response>;
}
