// `import { usageLimit } from "@tally/client/middleware"`: an Express middleware for other services. It asks Tally's
// entitlement endpoint whether a customer may use a meter, caches each decision briefly (default 1 s) in bounded
// memory, coalesces concurrent lookups of the same key into one request, answers 429 with Retry-After and
// Tally's problem+json when blocked, and fails open (default, logged) or closed when Tally cannot answer.
// Only Express's types: nothing of Express is loaded at run time (@types/express is an optional peer).
import type { NextFunction, Request, RequestHandler, Response } from "express";

export interface UsageLimitOptions {
  /** Tally's base URL, e.g. http://tally.internal:3000 */
  url: string;
  /** An API key with the read scope. */
  apiKey: string;
  /** The customer a request bills to; undefined lets the request through unmetered. */
  customer: (req: Request) => string | undefined | Promise<string | undefined>;
  meter: string | ((req: Request) => string);
  /** How long a decision is reused (ms); default 1000. */
  cacheMs?: number;
  /** Most decisions kept; the oldest are dropped first. Default 10,000. */
  maxEntries?: number;
  /** When Tally cannot answer: true lets requests through (default), false answers 503. */
  failOpen?: boolean;
  /** Per lookup; default 2000 ms. */
  timeoutMs?: number;
  logger?: { warn(obj: object, msg: string): void };
}

export interface Decision {
  allowed: boolean;
  /** When this decision stops being reused (epoch ms). */
  expires: number;
  /** When the blocked period ends (epoch ms), for Retry-After. */
  resetsAt?: number;
  /** Tally's problem+json body when blocked. */
  body?: string;
  headers: Record<string, string>;
}

export class TallyUnavailableError extends Error {
  override name = "TallyUnavailableError";
}

/** Entitlement lookups with a bounded, short-lived cache and one request in flight per key. */
export class EntitlementClient {
  readonly #cache = new Map<string, Decision>();
  readonly #inFlight = new Map<string, Promise<Decision>>();
  readonly #base: string;
  readonly #cacheMs: number;
  readonly #maxEntries: number;
  readonly #timeoutMs: number;
  /** Requests sent to Tally (for tests and metrics). */
  lookups = 0;

  constructor(
    private readonly opts: Pick<UsageLimitOptions, "url" | "apiKey" | "cacheMs" | "maxEntries" | "timeoutMs">,
  ) {
    this.#base = opts.url.replace(/\/+$/, "");
    this.#cacheMs = opts.cacheMs ?? 1_000;
    this.#maxEntries = opts.maxEntries ?? 10_000;
    this.#timeoutMs = opts.timeoutMs ?? 2_000;
  }

  get size(): number {
    return this.#cache.size;
  }

  /** A cached decision still valid at `now`, without any I/O. */
  cached(customer: string, meter: string, now = Date.now()): Decision | undefined {
    const d = this.#cache.get(`${customer}\u0000${meter}`);
    return d && d.expires > now ? d : undefined;
  }

  async decide(customer: string, meter: string): Promise<Decision> {
    const key = `${customer}\u0000${meter}`;
    const hit = this.#cache.get(key);
    if (hit && hit.expires > Date.now()) return hit;
    let pending = this.#inFlight.get(key);
    if (!pending) {
      pending = this.#fetch(customer, meter).finally(() => this.#inFlight.delete(key));
      this.#inFlight.set(key, pending);
    }
    const decision = await pending;
    this.#cache.delete(key);
    this.#cache.set(key, decision);
    while (this.#cache.size > this.#maxEntries) {
      const oldest = this.#cache.keys().next().value as string;
      this.#cache.delete(oldest);
    }
    return decision;
  }

  async #fetch(customer: string, meter: string): Promise<Decision> {
    this.lookups += 1;
    const url = `${this.#base}/v1/entitlements/${encodeURIComponent(customer)}/${encodeURIComponent(meter)}`;
    let res: globalThis.Response;
    try {
      res = await fetch(url, {
        headers: { Authorization: `Bearer ${this.opts.apiKey}`, Accept: "application/json" },
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
    } catch (err) {
      throw new TallyUnavailableError(`Tally did not answer ${url}: ${(err as Error).message}`, { cause: err });
    }
    const body = await res.text();
    const expires = Date.now() + this.#cacheMs;
    const headers: Record<string, string> = {};
    for (const h of ["ratelimit", "ratelimit-policy"]) {
      const v = res.headers.get(h);
      if (v) headers[h === "ratelimit" ? "RateLimit" : "RateLimit-Policy"] = v;
    }
    if (res.status === 200) return { allowed: true, expires, headers };
    if (res.status === 429) {
      let parsed: { allowed?: unknown; resets_at?: string; code?: string } | undefined;
      try {
        parsed = JSON.parse(body) as typeof parsed;
      } catch {
        parsed = undefined;
      }
      // Tally's per-key request rate limit also answers 429, but says nothing about the customer: blocking the
      // customer on it would be wrong, so it counts as "Tally cannot answer" (fail open or closed).
      if (parsed?.allowed !== false) {
        throw new TallyUnavailableError(`Tally refused the lookup (${res.status}): ${body.slice(0, 200)}`);
      }
      // Out of credits: no period end unblocks it (a new grant does), so Tally's Retry-After says when to ask again.
      let resetsAt = parsed.code === "credits_exhausted" ? Number.NaN : Date.parse(parsed.resets_at ?? "");
      if (Number.isNaN(resetsAt)) resetsAt = Date.now() + Number(res.headers.get("retry-after") ?? 1) * 1000;
      return { allowed: false, expires, resetsAt, body, headers };
    }
    throw new TallyUnavailableError(`Tally answered ${res.status} for ${url}: ${body.slice(0, 200)}`);
  }
}

const WARN_EVERY_MS = 10_000;

/** Answers a decision: on to the next handler, or 429 with Tally's problem body and headers. */
function answer(res: Response, next: NextFunction, d: Decision): void {
  for (const [k, v] of Object.entries(d.headers)) res.setHeader(k, v);
  if (d.allowed) {
    next();
    return;
  }
  const seconds = Math.max(1, Math.ceil(((d.resetsAt ?? Date.now()) - Date.now()) / 1000));
  res.status(429).setHeader("Retry-After", String(seconds));
  res.type("application/problem+json").send(d.body);
}

/** What a request gets when Tally cannot be asked: through (fail open) or 503; a warning every 10 s at most. */
function unavailable(opts: UsageLimitOptions) {
  const failOpen = opts.failOpen ?? true;
  const logger = opts.logger ?? { warn: (obj: object, msg: string) => console.warn(msg, obj) };
  let lastWarning = 0;
  return (res: Response, next: NextFunction, err: unknown) => {
    if (Date.now() - lastWarning > WARN_EVERY_MS) {
      lastWarning = Date.now();
      logger.warn(
        { err: (err as Error).message, failOpen },
        failOpen
          ? "Tally unavailable: letting requests through (fail open)"
          : "Tally unavailable: refusing requests (fail closed)",
      );
    }
    if (failOpen) {
      next();
      return;
    }
    res.status(503).setHeader("Retry-After", "1");
    res.type("application/problem+json").send(
      JSON.stringify({
        type: "urn:tally:problem:entitlement_unavailable",
        title: "Service Unavailable",
        status: 503,
        detail: "usage limits cannot be checked right now; retry shortly",
        code: "entitlement_unavailable",
      }),
    );
  };
}

export function usageLimit(opts: UsageLimitOptions): RequestHandler & { client: EntitlementClient } {
  const client = new EntitlementClient(opts);
  const fail = unavailable(opts);
  const meterOf = typeof opts.meter === "string" ? () => opts.meter as string : opts.meter;

  const decide = (customer: string | undefined, req: Request, res: Response, next: NextFunction) => {
    if (customer === undefined) {
      next();
      return;
    }
    const meter = meterOf(req);
    // The hot path: a cached decision is answered synchronously, without a promise.
    const cached = client.cached(customer, meter);
    if (cached) {
      answer(res, next, cached);
      return;
    }
    client.decide(customer, meter).then(
      (d) => answer(res, next, d),
      (err) => fail(res, next, err),
    );
  };

  const handler = ((req: Request, res: Response, next: NextFunction) => {
    let customer: string | undefined | Promise<string | undefined>;
    try {
      customer = opts.customer(req);
    } catch (err) {
      next(err);
      return;
    }
    if (customer instanceof Promise) {
      customer.then(
        (c) => {
          try {
            decide(c, req, res, next);
          } catch (err) {
            next(err);
          }
        },
        (err) => next(err),
      );
      return;
    }
    try {
      decide(customer, req, res, next);
    } catch (err) {
      next(err);
    }
  }) as RequestHandler & { client: EntitlementClient };
  handler.client = client;
  return handler;
}
