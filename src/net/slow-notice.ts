/**
 * Where to say that a request is slow ("waiting for sso.example.org ..."), once per request that
 * takes longer than a second: set by ../cli/run.ts, so nobody on a terminal stares at nothing. A
 * module of its own: setting it must not load the HTTP code (./http.ts) into every command.
 */
let notice: ((host: string) => void) | undefined;

export function onSlowRequest(n: (host: string) => void): void {
  notice = n;
}

export function slowNotice(): ((host: string) => void) | undefined {
  return notice;
}
