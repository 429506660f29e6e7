// Exponential backoff with jitter, for every retry in Tally (webhook deliveries, Stripe requests).

interface BackoffOptions {
  /** The delay of the first retry, before jitter. */
  baseMs: number;
  /** No delay grows past this, before jitter. */
  capMs?: number;
  /** The delay is spread uniformly over ±jitter of itself (0.5: [50 %, 150 %)). */
  jitter: number;
}

/** Delay before retry `attempt` (0-based): base × 2^attempt, capped, with jitter. */
export function backoffMs(attempt: number, o: BackoffOptions, random: () => number = Math.random): number {
  const raw = Math.min(o.baseMs * 2 ** Math.max(attempt, 0), o.capMs ?? Number.POSITIVE_INFINITY);
  return Math.round(raw * (1 - o.jitter + 2 * o.jitter * random()));
}
