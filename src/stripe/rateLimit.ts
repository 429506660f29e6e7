// Client-side pacing of Stripe requests (sandboxes allow 25 per second).

/**
 * At most `perSecond` requests in any second *as the server sees them*: a request may start only while fewer than
 * `perSecond` others are in flight or ended within the last second. A server stamps a request somewhere between
 * its start and its end, so whatever the delays on the way (a busy event loop, the network), any second of
 * arrivals holds at most `perSecond` — which pacing by start times alone cannot promise. Wall-clock time, so the
 * last second of one process's run can be handed to the next run in another process (`recent`, `seed`).
 */
export class RateLimiter {
  readonly #ended: number[] = [];
  #inFlight = 0;
  #queue: Promise<unknown> = Promise.resolve();
  #wake: (() => void) | undefined;
  readonly #windowMs: number;

  constructor(
    readonly perSecond: number,
    marginMs = 5,
    private readonly now: () => number = () => Date.now(),
  ) {
    this.#windowMs = 1000 + marginMs;
  }

  /** When requests of the last second ended (epoch ms): what another process needs to go on from here. */
  recent(): number[] {
    const t = this.now();
    return this.#ended.filter((e) => t - e < this.#windowMs);
  }

  /**
   * Takes over the last second of the previous run, wherever it ran: it already holds this limiter's own requests
   * of that second (runs are serialized, and each run starts from its predecessor's), so it replaces them.
   */
  seed(endedAt: number[]): void {
    const t = this.now();
    const recent = endedAt.filter((e) => t - e < this.#windowMs).sort((a, b) => a - b);
    this.#ended.splice(0, this.#ended.length, ...recent);
  }

  /** Resolves when a request may start (callers are served in order) with the function to call when it ends. */
  acquire(): Promise<() => void> {
    const turn = this.#queue.then(() => this.#wait());
    this.#queue = turn.catch(() => {});
    return turn;
  }

  async #wait(): Promise<() => void> {
    for (;;) {
      const t = this.now();
      while (this.#ended.length > 0 && t - (this.#ended[0] as number) >= this.#windowMs) this.#ended.shift();
      if (this.#inFlight + this.#ended.length < this.perSecond) {
        this.#inFlight += 1;
        let released = false;
        return () => {
          if (released) return;
          released = true;
          this.#inFlight -= 1;
          this.#ended.push(this.now());
          this.#wake?.();
        };
      }
      const oldest = this.#ended[0];
      await new Promise<void>((resolve) => {
        const timer = oldest === undefined ? undefined : setTimeout(done, this.#windowMs - (t - oldest) + 1);
        this.#wake = done;
        function done() {
          if (timer) clearTimeout(timer);
          resolve();
        }
      });
      this.#wake = undefined;
    }
  }
}
