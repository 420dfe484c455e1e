/**
 * Timers for any delay: setTimeout fires at once for a delay over 2^31 - 1 ms (about 24.8 days),
 * so `--timeout 25d` would end the wait before it began. Longer delays are waited in steps.
 */
export const MAX_TIMER_MS = 0x7fffffff;

/**
 * Calls fn after ms (any finite length); returns a function that cancels it. With `unref`, the
 * timer does not keep the process alive (as AbortSignal.timeout's does not).
 */
export function setLongTimeout(fn: () => void, ms: number, opts: { unref?: boolean } = {}): () => void {
  const due = performance.now() + ms;
  let timer: NodeJS.Timeout | undefined;
  const arm = (left: number) => {
    timer = setTimeout(
      () => {
        const rest = due - performance.now();
        if (rest > 0) arm(rest);
        else fn();
      },
      Math.max(0, Math.min(left, MAX_TIMER_MS)),
    );
    if (opts.unref === true) timer.unref();
  };
  arm(ms);
  return () => clearTimeout(timer);
}

/** AbortSignal.timeout for any delay (AbortSignal.timeout itself is bound by setTimeout's range). */
export function longTimeoutSignal(ms: number): AbortSignal {
  if (ms <= MAX_TIMER_MS) return AbortSignal.timeout(ms);
  const controller = new AbortController();
  setLongTimeout(() => controller.abort(new DOMException("The operation timed out.", "TimeoutError")), ms, {
    unref: true,
  });
  return controller.signal;
}
