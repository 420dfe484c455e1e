/**
 * Proxy support, loaded only when a proxy variable is set: Node 20's fetch ignores HTTPS_PROXY and
 * NO_PROXY, and undici's EnvHttpProxyAgent reads them the way curl does. undici is a file of its
 * own (dist/vendor/undici.cjs), imported only from here, so that a renewal without a proxy never
 * parses it.
 */
import { Agent, EnvHttpProxyAgent, fetch as undiciFetch } from "undici";
import { isLoopbackHost } from "../os/loopback-host.ts";

const agent = new EnvHttpProxyAgent();
const direct = new Agent();

export function proxyFetch(url: string, init: RequestInit): Promise<Response> {
  // A loopback issuer uses plain http: through a proxy its traffic (client secret, tokens) would
  // cross the network in clear, whatever NO_PROXY says. Loopback is always reached directly.
  const dispatcher = isLoopbackHost(new URL(url).hostname) ? direct : agent;
  return undiciFetch(url, { ...(init as object), dispatcher }) as unknown as Promise<Response>;
}
