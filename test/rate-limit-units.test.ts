// The per-key token bucket on its own (no server): refill, Retry-After arithmetic, independence of keys, the bound.
import { describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";
import { KeyRateLimiter, rateLimited } from "../src/http/rateLimit.js";

function limiter(rps: number, burst: number, maxKeys?: number) {
  let t = 1_000;
  const l = new KeyRateLimiter({ rps, burst, maxKeys, now: () => t });
  return { l, advance: (ms: number) => (t += ms) };
}

describe("per-key rate limiter", () => {
  it("when a key sends its burst at once, then every request passes and the next one waits", () => {
    const { l } = limiter(10, 20);
    for (let i = 0; i < 20; i++) expect(l.take("k")).toBe(0);
    expect(l.take("k")).toBe(1);
  });

  it("when time passes, then tokens come back at the sustained rate, never above the burst", () => {
    const { l, advance } = limiter(10, 20);
    for (let i = 0; i < 20; i++) l.take("k");
    advance(100); // one token at 10/s
    expect(l.take("k")).toBe(0);
    expect(l.take("k")).toBe(1);
    advance(60_000);
    for (let i = 0; i < 20; i++) expect(l.take("k")).toBe(0);
    expect(l.take("k")).not.toBe(0);
  });

  it("when a key is refused, then Retry-After is the whole seconds until a token, at least 1, and nothing is taken", () => {
    const { l, advance } = limiter(0.25, 1); // a token every 4 s
    expect(l.take("k")).toBe(0);
    expect(l.take("k")).toBe(4);
    advance(1_500);
    expect(l.take("k")).toBe(3); // 2.5 s left → 3
    expect(l.take("k")).toBe(3); // refusals take nothing
    advance(2_500);
    expect(l.take("k")).toBe(0);
  });

  it("when one key is over its rate, then another key is not affected", () => {
    const { l } = limiter(1, 2);
    l.take("a");
    l.take("a");
    expect(l.take("a")).toBeGreaterThan(0);
    expect(l.take("b")).toBe(0);
  });

  it("when the rate is 0, then the limit is off", () => {
    const { l } = limiter(0, 1);
    expect(l.enabled).toBe(false);
    for (let i = 0; i < 10_000; i++) expect(l.take("k")).toBe(0);
    expect(l.size).toBe(0);
  });

  it("when more keys than the bound are seen, then the map stays bounded and refilled buckets go first", () => {
    const { l, advance } = limiter(1, 5, 100);
    for (let i = 0; i < 5; i++) l.take("busy");
    for (let i = 0; i < 1_000; i++) {
      l.take(`k${i}`);
      expect(l.size).toBeLessThanOrEqual(100);
    }
    advance(2_000); // every bucket refilled: each new key now evicts full ones, losing nothing
    for (let i = 0; i < 100; i++) l.take(`later${i}`);
    expect(l.size).toBeLessThanOrEqual(100);
  });

  it("when refused, then the 429 problem carries Retry-After and the IETF draft RateLimit headers", () => {
    const { l } = limiter(100, 200);
    const err = rateLimited(l, 2);
    expect(err.status).toBe(429);
    expect(err.code).toBe("rate_limited");
    expect(err.options.headers).toEqual({
      "Retry-After": "2",
      "RateLimit-Policy": '"per-key";q=200;w=2',
      RateLimit: '"per-key";r=0;t=2',
    });
  });

  it("when configured from the environment, then the defaults are 2000/s and no explicit burst; bad values are refused", () => {
    const base = loadConfig({});
    expect(base.TALLY_RATE_LIMIT_RPS).toBe(2000);
    expect(base.TALLY_RATE_LIMIT_BURST).toBeUndefined();
    const set = loadConfig({ TALLY_RATE_LIMIT_RPS: "0.5", TALLY_RATE_LIMIT_BURST: "3" });
    expect(set.TALLY_RATE_LIMIT_RPS).toBe(0.5);
    expect(set.TALLY_RATE_LIMIT_BURST).toBe(3);
    expect(() => loadConfig({ TALLY_RATE_LIMIT_RPS: "-1", TALLY_RATE_LIMIT_BURST: "0" })).toThrow(
      /TALLY_RATE_LIMIT_RPS[\s\S]*TALLY_RATE_LIMIT_BURST/,
    );
  });
});
