// Per-key request rate limit: a token bucket per API key id, in this process's memory. A bucket holds up to
// `burst` tokens and refills at `rps` tokens per second; each authenticated request takes one. Time is the
// monotonic clock, not the injected business clock: this limits real request rates, and a test's frozen clock
// must not freeze the refill.
import { performance } from "node:perf_hooks";
import { AppError } from "../errors.js";

interface RateLimitOptions {
  /** Sustained requests per second per key; 0 turns the limit off. */
  rps: number;
  /** Requests a key may send at once after being idle (the bucket's size). */
  burst: number;
  /** Buckets kept at most (one per key id seen recently). */
  maxKeys?: number;
  /** Milliseconds on a monotonic clock (tests move it by hand). */
  now?: () => number;
}

interface Bucket {
  tokens: number;
  at: number;
}

const DEFAULT_MAX_KEYS = 10_000;

export class KeyRateLimiter {
  readonly enabled: boolean;
  readonly rps: number;
  readonly burst: number;
  readonly #perMs: number;
  readonly #maxKeys: number;
  readonly #now: () => number;
  readonly #buckets = new Map<string, Bucket>();
  /** RateLimit-Policy (IETF draft): the burst as quota, the time to refill it as the window. */
  readonly policy: string;

  constructor(opts: RateLimitOptions) {
    this.enabled = opts.rps > 0;
    this.rps = opts.rps;
    this.burst = Math.max(1, Math.floor(opts.burst));
    this.#perMs = opts.rps / 1000;
    this.#maxKeys = opts.maxKeys ?? DEFAULT_MAX_KEYS;
    this.#now = opts.now ?? (() => performance.now());
    this.policy = `"per-key";q=${this.burst};w=${this.enabled ? Math.max(1, Math.ceil(this.burst / this.rps)) : 0}`;
  }

  /**
   * Takes a token for this key. Returns 0 when the request may go ahead, else the whole seconds until a token is
   * available (at least 1), taking nothing. No allocation except for a key's first request.
   */
  take(keyId: string): number {
    if (!this.enabled) return 0;
    const now = this.#now();
    let bucket = this.#buckets.get(keyId);
    if (bucket === undefined) {
      if (this.#buckets.size >= this.#maxKeys) this.#evict(now);
      bucket = { tokens: this.burst, at: now };
      this.#buckets.set(keyId, bucket);
    } else if (now > bucket.at) {
      bucket.tokens = Math.min(this.burst, bucket.tokens + (now - bucket.at) * this.#perMs);
      bucket.at = now;
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - bucket.tokens) / this.#perMs / 1000));
  }

  /** Buckets held now (tests check the bound). */
  get size(): number {
    return this.#buckets.size;
  }

  /** Drops buckets that have refilled (a full bucket is the same as none); if that frees nothing, the oldest tenth. */
  #evict(now: number): void {
    for (const [id, b] of this.#buckets) {
      if (b.tokens + (now - b.at) * this.#perMs >= this.burst) this.#buckets.delete(id);
    }
    if (this.#buckets.size < this.#maxKeys) return;
    let drop = Math.max(1, Math.floor(this.#maxKeys / 10));
    for (const id of this.#buckets.keys()) {
      if (drop-- <= 0) break;
      this.#buckets.delete(id);
    }
  }
}

/** The 429 answer for a key over its rate: Retry-After plus the IETF draft RateLimit headers. */
export function rateLimited(limiter: KeyRateLimiter, retryAfterSeconds: number): AppError {
  return new AppError(
    429,
    "rate_limited",
    `this API key sent more than ${limiter.rps} requests per second (burst ${limiter.burst}); retry in ${retryAfterSeconds} s`,
    {
      headers: {
        "Retry-After": String(retryAfterSeconds),
        "RateLimit-Policy": limiter.policy,
        RateLimit: `"per-key";r=0;t=${retryAfterSeconds}`,
      },
    },
  );
}
