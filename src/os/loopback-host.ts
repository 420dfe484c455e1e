/**
 * For a URL's hostname: the URL parser has already turned every IPv4 spelling (127.1, 0x7f.1)
 * into dotted decimal. Only names that always mean this machine: *.localhost depends on the
 * resolver.
 */
export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}
