// Client-side pacing of Stripe requests: a sliding one-second window (never more than `perSecond` request starts
// in any window, sandboxes allow 25/s), and exponential backoff with jitter after a 429.

export const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });

export class RateLimiter {
  readonly #starts: number[] = [];
  #queue: Promise<void> = Promise.resolve();
  readonly #windowMs: number;

  /**
   * `marginMs` widens the window a little: requests reach the server a few milliseconds apart from when they left,
   * and the server's window must still never see more than `perSecond`.
   */
  constructor(
    readonly perSecond: number,
    marginMs = 50,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.#windowMs = 1000 + marginMs;
  }

  /** Resolves when a request may start; callers are served in order. */
  acquire(): Promise<void> {
    const turn = this.#queue.then(() => this.#wait());
    this.#queue = turn.catch(() => {});
    return turn;
  }

  async #wait(): Promise<void> {
    for (;;) {
      const t = this.now();
      while (this.#starts.length > 0 && t - (this.#starts[0] as number) >= this.#windowMs) this.#starts.shift();
      if (this.#starts.length < this.perSecond) {
        this.#starts.push(t);
        return;
      }
      await sleep(this.#windowMs - (t - (this.#starts[0] as number)) + 1);
    }
  }
}

/** Delay before retry `attempt` (0-based): base × 2^attempt, with full jitter in [50 %, 150 %). */
export function backoffMs(baseMs: number, attempt: number, random: () => number = Math.random): number {
  return Math.round(baseMs * 2 ** attempt * (0.5 + random()));
}
