/** The process environment as a command sees it: injected, so that tests give their own. */
export type Env = Readonly<Record<string, string | undefined>>;

/**
 * Variables meant for this process alone: the Nix wrapper names itself in
 * NIX_CACHE_LOGIN_LAUNCHER for `timer install` (../commands/timer.ts). A program we start (a
 * browser, which may go on to start others) does not inherit them, so that a nix-cache-login
 * installed another way and started from there does not take the wrapper for its own.
 */
export const OWN_ONLY = ["NIX_CACHE_LOGIN_LAUNCHER"] as const;

/** `env` for a program we start: without OWN_ONLY. */
export function childEnv(env: Env): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = { ...env };
  for (const k of OWN_ONLY) delete out[k];
  return out;
}
