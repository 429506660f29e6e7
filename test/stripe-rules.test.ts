// Pure rules of the Stripe sync: identifiers, timestamps and the window, error classification, and the carry —
// a property test that whatever the values, scales, late changes and refusals, the units sent for a month stay
// within half a unit of scale × Tally's total.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Dec } from "../src/pricing/money.js";
import { addBuckets, alignDown } from "../src/rollups/buckets.js";
import { addressOf } from "../src/stripe/client.js";
import {
  carryRevert,
  firstSendable,
  hourTimestamp,
  identifierFor,
  isSendable,
  lastSendableSecond,
  periodTimestamp,
  planPair,
  windowStart,
} from "../src/stripe/rules.js";
import { classifyMeterError } from "../src/stripe/sender.js";
import { LEDGER_KIND_TABLE, ledgerKind, type WorkRow } from "../src/stripe/types.js";

const row = (over: Partial<WorkRow> = {}): WorkRow => ({
  customer: "c",
  meter: "m",
  kind: "hour",
  bucket: new Date("2026-11-03T10:00:00Z"),
  period: new Date("2026-11-01T00:00:00Z"),
  target: "0",
  scale: "1",
  covered: "0",
  coveredScale: "1",
  sentUnits: "0",
  seq: 0,
  pending: null,
  lastSentTimestamp: null,
  stripeCustomerId: "cus_1",
  eventName: "ev",
  ...over,
});

describe("identifiers and timestamps", () => {
  it("when the same send is identified twice, then the identifier is the same; the next send of the row differs", () => {
    const r = row();
    const a = identifierFor("install-1", r, 1);
    expect(identifierFor("install-1", r, 1)).toBe(a);
    expect(identifierFor("install-1", r, 2)).not.toBe(a);
    expect(identifierFor("install-2", r, 1)).not.toBe(a);
    expect(identifierFor("install-1", { ...r, customer: "d" }, 1)).not.toBe(a);
    expect(a).toMatch(/^tly_20261103T10_1_[0-9a-f]{40}$/);
    const long = identifierFor("i", { ...r, customer: "x".repeat(128), meter: "y".repeat(64) }, 2_000_000_000);
    expect(long.length).toBeLessThanOrEqual(100);
  });

  it("when an hour is sent, then it carries the hour's last second; a running value carries now, inside its month, after the previous send", () => {
    expect(hourTimestamp(new Date("2026-11-03T10:00:00Z")).toISOString()).toBe("2026-11-03T10:59:59.000Z");
    const nov = new Date("2026-11-01T00:00:00Z");
    const now = new Date("2026-11-10T12:30:45.678Z");
    expect(periodTimestamp(nov, now, null).toISOString()).toBe("2026-11-10T12:30:45.000Z");
    expect(periodTimestamp(nov, now, new Date("2026-11-10T12:30:45Z")).toISOString()).toBe("2026-11-10T12:30:46.000Z");
    const december = new Date("2026-12-03T00:00:00Z");
    expect(periodTimestamp(nov, december, null).toISOString()).toBe("2026-11-30T23:59:59.000Z");
  });

  it("when a timestamp is older than 35 days (less a minute of margin), then it is outside Stripe's window", () => {
    const now = new Date("2026-11-10T12:00:00Z");
    expect(windowStart(now).toISOString()).toBe("2026-10-06T12:01:00.000Z");
    expect(isSendable(new Date("2026-10-06T12:01:00Z"), now)).toBe(true);
    expect(isSendable(new Date("2026-10-06T12:00:59Z"), now)).toBe(false);
  });

  it("when SQL compares buckets with firstSendable, then it agrees with the last sendable second of every bucket", () => {
    const kinds = ["hour", "period"] as const;
    fc.assert(
      fc.property(
        fc.integer({ min: Date.UTC(2020, 0, 1), max: Date.UTC(2035, 0, 1) }),
        fc.integer({ min: -2000, max: 2000 }),
        fc.constantFrom(...kinds),
        (nowMs, offset, kind) => {
          const now = new Date(nowMs);
          const unit = kind === "hour" ? "hour" : "month";
          // Buckets around the window's start, where the two could differ.
          const start = addBuckets(alignDown(windowStart(now), unit), unit, Math.sign(offset) * (Math.abs(offset) % 3));
          const first = firstSendable(now)[kind];
          expect(start >= first).toBe(lastSendableSecond(kind, start) >= windowStart(now));
        },
      ),
    );
    // The window starting at an hour's (and a month's) last second: that bucket is still sendable; half a second
    // later it is not.
    const now = new Date(Date.parse("2026-10-31T23:59:59Z") + 35 * 86_400_000 - 60_000);
    expect(firstSendable(now)).toEqual({
      window: new Date("2026-10-31T23:59:59Z"),
      hour: new Date("2026-10-31T23:00:00Z"),
      period: new Date("2026-10-01T00:00:00Z"),
    });
    const later = new Date(now.getTime() + 500);
    expect(firstSendable(later)).toMatchObject({
      hour: new Date("2026-11-01T00:00:00Z"),
      period: new Date("2026-11-01T00:00:00Z"),
    });
  });

  it("when a meter's ledger kind is asked, then sum, count and amount meters keep hours and the others the period", () => {
    expect(ledgerKind("sum", "quantity")).toBe("hour");
    expect(ledgerKind("count", "quantity")).toBe("hour");
    expect(ledgerKind("max", "quantity")).toBe("period");
    expect(ledgerKind("last", "quantity")).toBe("period");
    expect(ledgerKind("last", "amount")).toBe("hour");
    const [values, aggregations, kinds] = LEDGER_KIND_TABLE;
    expect(values.map((v, i) => `${v}/${aggregations[i]}=${kinds[i]}`)).toEqual([
      "quantity/sum=hour",
      "quantity/count=hour",
      "quantity/max=period",
      "quantity/last=period",
      "quantity/min=period",
      "quantity/avg=period",
      "quantity/unique_count=period",
      "amount/sum=hour",
      "amount/count=hour",
      "amount/max=hour",
      "amount/last=hour",
      "amount/min=hour",
      "amount/avg=hour",
      "amount/unique_count=hour",
    ]);
  });
});

describe("Stripe's answers", () => {
  it("when the SDK throws, then each answer maps to what the sync does about it", () => {
    expect(classifyMeterError({ statusCode: 400, message: "An event already exists with identifier tly_x." })).toEqual({
      kind: "duplicate",
    });
    expect(classifyMeterError({ statusCode: 429, message: "slow down" }).kind).toBe("rate_limited");
    expect(classifyMeterError({ statusCode: 500, message: "oops" }).kind).toBe("retry_later");
    expect(classifyMeterError({ type: "StripeConnectionError", message: "timeout" }).kind).toBe("retry_later");
    expect(classifyMeterError({ statusCode: 401, message: "Invalid API Key" }).kind).toBe("auth_failed");
    expect(
      classifyMeterError({ statusCode: 400, message: "No active meter", rawType: "invalid_request_error", code: "x" }),
    ).toEqual({ kind: "rejected", status: 400, code: "x", message: "No active meter" });
  });

  it("when STRIPE_API_BASE is set, then host, port and protocol come from it", () => {
    expect(addressOf("http://127.0.0.1:12111")).toEqual({ host: "127.0.0.1", port: 12111, protocol: "http" });
    expect(addressOf("https://api.stripe.com")).toEqual({ host: "api.stripe.com", port: 443, protocol: "https" });
  });
});

describe("whole units and the carry", () => {
  it("when 0.0005 arrives each hour at scale 1000, then sends alternate 1 and nothing, and the total never drifts", () => {
    const carries = new Map<string, Dec>();
    const rows = Array.from({ length: 5 }, (_, i) =>
      row({ bucket: new Date(Date.UTC(2026, 10, 3, i)), target: "0.0005", scale: "1000", coveredScale: "1000" }),
    );
    const planned = planPair(rows, carries, { install: "i", now: new Date("2026-11-04T00:00:00Z") });
    expect(planned.map((p) => (p.kind === "send" ? p.pending.units : p.kind))).toEqual(["1", "skip", "1", "skip", "1"]);
    expect(carries.get("2026-11-01T00:00:00.000Z")?.toString()).toBe("-0.5");
  });

  it("when a running value is what Stripe already has, then nothing is sent", () => {
    const planned = planPair([row({ kind: "period", target: "8", sentUnits: "8", covered: "7" })], new Map(), {
      install: "i",
      now: new Date("2026-11-04T00:00:00Z"),
    });
    expect(planned.map((p) => p.kind)).toEqual(["skip"]);
  });

  it("when a value would exceed 15 significant digits, then it is not sent", () => {
    const planned = planPair([row({ target: "1000000000000", scale: "1000", coveredScale: "1000" })], new Map(), {
      install: "i",
      now: new Date("2026-11-04T00:00:00Z"),
    });
    expect(planned).toEqual([expect.objectContaining({ kind: "too_large", units: "1000000000000000" })]);
  });

  it("when values, late changes, scale changes and refusals come in any order, then Σ units stays within half a unit of scale × total", () => {
    const value = fc
      .tuple(fc.integer({ min: -5_000_000, max: 50_000_000 }), fc.integer({ min: 0, max: 6 }))
      .map(([n, places]) => new Dec(n).div(new Dec(10).pow(places)).toFixed());
    const step = fc.record({
      hour: fc.integer({ min: 0, max: 5 }),
      value,
      refuse: fc.boolean(),
      rescale: fc.option(fc.constantFrom("1", "10", "1000", "0.5", "3"), { nil: undefined }),
    });
    fc.assert(
      fc.property(
        fc.constantFrom("1", "1000", "0.001", "7"),
        fc.array(step, { minLength: 1, maxLength: 30 }),
        (scale0, steps) => {
          let scale: string = scale0;
          const rows = new Map<number, WorkRow>();
          const carries = new Map<string, Dec>();
          let sent = new Dec(0);
          const now = new Date("2026-11-04T00:00:00Z");
          const settle = (refuseFirst: boolean) => {
            const open = [...rows.values()].filter((r) => r.target !== r.covered || r.scale !== r.coveredScale);
            let refused = !refuseFirst;
            for (const p of planPair(open, carries, { install: "i", now })) {
              const r = p.row;
              if (p.kind === "skip") {
                rows.set(r.bucket.getTime(), { ...r, covered: r.target, coveredScale: r.scale });
              } else if (p.kind === "send" && !refused) {
                // Stripe refuses this one: the carry goes back, the row stays uncovered.
                refused = true;
                const key = r.period.toISOString();
                carries.set(key, (carries.get(key) ?? new Dec(0)).plus(carryRevert(r, p.pending)));
              } else if (p.kind === "send") {
                sent = sent.plus(p.pending.units);
                rows.set(r.bucket.getTime(), { ...r, covered: r.target, coveredScale: r.scale, seq: r.seq + 1 });
              }
            }
          };
          for (const s of steps) {
            if (s.rescale) {
              scale = s.rescale;
              for (const [k, r] of rows) rows.set(k, { ...r, scale });
            }
            const bucket = Date.UTC(2026, 10, 3, s.hour);
            const existing = rows.get(bucket);
            rows.set(
              bucket,
              existing
                ? { ...existing, target: s.value }
                : row({ bucket: new Date(bucket), target: s.value, scale, coveredScale: scale }),
            );
            settle(s.refuse);
          }
          settle(false);
          const total = [...rows.values()].reduce((acc, r) => acc.plus(r.target), new Dec(0));
          expect(sent.minus(total.times(scale)).abs().lte(0.5)).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });
});
