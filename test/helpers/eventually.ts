// Waiting in tests: never a fixed sleep, always for a condition, with a deadline.

/**
 * Calls `fn` until it returns without throwing (an `expect` that holds) and returns its value; after `timeout` ms
 * throws the last failure. `interval` is the pause between tries, not a wait for anything.
 */
export async function eventually<T>(
  fn: () => T | Promise<T>,
  opts: { timeout?: number; interval?: number; message?: string } = {},
): Promise<T> {
  const timeout = opts.timeout ?? 5_000;
  const interval = opts.interval ?? 25;
  const deadline = Date.now() + timeout;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() >= deadline) {
        const why = err instanceof Error ? err.message : String(err);
        throw new Error(`${opts.message ?? "condition"} not met within ${timeout} ms: ${why}`, { cause: err });
      }
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}

/** Polls `fn` until `ok(value)`; returns the value and how long it took. */
export async function until<T>(
  fn: () => T | Promise<T>,
  ok: (value: T) => boolean,
  opts: { timeout?: number; interval?: number; message?: string } = {},
): Promise<{ value: T; ms: number }> {
  const t0 = Date.now();
  const value = await eventually(async () => {
    const v = await fn();
    if (!ok(v)) throw new Error(`last value: ${JSON.stringify(v)}`);
    return v;
  }, opts);
  return { value, ms: Date.now() - t0 };
}

/**
 * The pace of a load generator (a client's think time, a simulated job's work, the length of an outage): never a
 * wait for an outcome — those wait on their condition with eventually/until.
 */
export const pace = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
