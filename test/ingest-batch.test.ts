// The pure parts of the optimistic write path: the fast validation path agrees with validateEvent, batches are
// put in (customer, id) byte order with the first of each key kept, and the COPY rows are what PostgreSQL reads.
import { createHash } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { compareCodePoints, customersInOrder, distinctInKeyOrder } from "../src/ingest/batch.js";
import { encodeBinaryBatch, pgMicros } from "../src/ingest/copyBinary.js";
import { parseTimestamp } from "../src/ingest/event.js";
import { keyHashes } from "../src/ingest/keys.js";
import { EventChecker, fastTimestampMs, type ValidEvent, validateEvent } from "../src/ingest/validate.js";

const ctx = {
  aggregationOf: (m: string) => ({ calls: "sum", seats: "max", hits: "count", plan: "last" })[m] as never,
  nowMs: Date.UTC(2026, 10, 23, 12),
  maxAgeMs: 35 * 86_400_000,
  maxFutureMs: 300_000,
};

// Strings that stress the rules: control characters, NUL, paired and lone surrogates, U+E000+, backslashes.
const text = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.string({ unit: "binary", maxLength: 6 }),
  fc.constantFrom(
    "",
    "a",
    "cust-1",
    "x".repeat(128),
    "x".repeat(129),
    "a\\b",
    "a\tb",
    "\u0000",
    "😀",
    "\ud800",
    "\uffff",
  ),
);
const timestamp = fc.oneof(
  fc
    .date({ min: new Date(ctx.nowMs - 40 * 86_400_000), max: new Date(ctx.nowMs + 600_000), noInvalidDate: true })
    .map((d) => d.toISOString()),
  fc
    .tuple(
      fc.integer({ min: 0, max: 9999 }),
      fc.integer({ min: 0, max: 13 }),
      fc.integer({ min: 0, max: 32 }),
      fc.integer({ min: 0, max: 25 }),
      fc.integer({ min: 0, max: 61 }),
      fc.constantFrom("", ".1", ".123", ".123456", ".123456789", ".1234567891", "."),
      fc.constantFrom("Z", "z", "+00:00", "-05:30", "+23:59", "+24:00", "-00:60", ""),
    )
    .map(([y, mo, d, h, m, frac, tz]) => {
      const p = (n: number, w = 2) => String(n).padStart(w, "0");
      return `${p(y, 4)}-${p(mo)}-${p(d)}T${p(h)}:${p(m)}:${p(m % 60)}${frac}${tz}`;
    }),
  fc.constantFrom(
    "2026-11-23T11:00:00Z",
    "2026-11-23t11:00:00z",
    "2026-11-23T11:00:00",
    "nope",
    "2024-02-29T12:00:00Z",
  ),
);
const value = fc.oneof(
  fc.integer({ min: -1e6, max: 1e6 }),
  fc.double({ noNaN: false }),
  fc.constantFrom("1", "0", "-0", "007", "-3", "2.50", "1e3", "123456789012345678", "1234567890123456789", "", "x"),
  fc.constantFrom(1e15, -1e15, 2 ** 53, 0.1, -0),
);
const properties = fc.oneof(
  fc.dictionary(text, text, { maxKeys: 18 }),
  fc.dictionary(fc.string({ maxLength: 3 }), fc.oneof(fc.string(), fc.integer()), { maxKeys: 3 }),
  fc.constantFrom({}, [], null, "x", { __proto__: null, a: "b" }),
);
const hostileEvent = fc.record(
  {
    id: fc.oneof(text, fc.integer()),
    customer: fc.oneof(text, fc.constant(7)),
    meter: fc.constantFrom("calls", "seats", "hits", "plan", "nope", "bad key", 5),
    value,
    timestamp,
    properties,
    extra: fc.constant(1),
  },
  { requiredKeys: [] },
);
// Mostly valid events, so the fast path's acceptances are exercised as much as its refusals.
const plainEvent = fc.record(
  {
    id: fc.oneof(fc.string({ minLength: 1, maxLength: 10 }), text),
    customer: fc.oneof(fc.string({ minLength: 1, maxLength: 10 }), text),
    meter: fc.constantFrom("calls", "seats", "hits", "plan"),
    value,
    timestamp,
    properties: fc.oneof(
      fc.dictionary(fc.string({ minLength: 1, maxLength: 4 }), fc.string(), { maxKeys: 4 }),
      properties,
    ),
  },
  { requiredKeys: ["id", "customer", "meter"] },
);
const rawEvent = fc.oneof(hostileEvent, plainEvent);

describe("the fast validation path", () => {
  it("property: whenever it accepts an event, validateEvent accepts it with exactly the same result", () => {
    let fast = 0;
    fc.assert(
      fc.property(rawEvent, (raw) => {
        const checked = new EventChecker(ctx).check(raw, 3);
        expect(checked).toEqual(validateEvent(raw, 3, ctx));
        if (checked.ok) fast++;
      }),
      { numRuns: 10_000 },
    );
    expect(fast).toBeGreaterThan(500);
  });

  it("property: a timestamp it reads has the instant parseTimestamp gives it", () => {
    fc.assert(
      fc.property(timestamp, (s) => {
        const ms = fastTimestampMs(s);
        if (ms === undefined) return;
        const slow = parseTimestamp(s);
        expect(slow.ok).toBe(true);
        if (slow.ok) expect({ ms, text: s }).toEqual(slow.value);
      }),
      { numRuns: 10_000 },
    );
  });

  it("when events have the common shapes, then the fast path takes them; otherwise it leaves them to the rules", () => {
    const checker = new EventChecker(ctx);
    for (const e of [
      { id: "e1", customer: "c1", meter: "calls" },
      { id: "e2", customer: "c@x.com", meter: "calls", value: "12", timestamp: "2026-11-23T11:59:59.123Z" },
      { id: "e3", customer: "c1", meter: "calls", value: -4, timestamp: "2026-11-23T12:59:59.123456+01:00" },
      { id: "e4", customer: "c1", meter: "seats", value: "2.5", properties: { region: "eu" } },
      { id: "e5", customer: "c1", meter: "plan", value: 2.25 },
    ]) {
      expect(checker.fast(e), JSON.stringify(e)).toEqual((validateEvent(e, 0, ctx) as { event: unknown }).event);
    }
    for (const e of [
      { id: "e1", customer: "c1", meter: "calls", timestamp: "2026-11-23t11:00:00z" },
      { id: "e1", customer: "c1", meter: "seats", value: -1 },
      { id: "e1", customer: "c1", meter: "nope" },
      { id: "e1", customer: "c1", meter: "calls", colour: "red" },
      { id: "😀", customer: "c1", meter: "calls" },
    ]) {
      expect(checker.fast(e), JSON.stringify(e)).toBeUndefined();
    }
  });
});

const ev = (customer: string, id: string, value = "1"): ValidEvent => ({
  customer,
  id,
  meter: "calls",
  value,
  ts: "2026-11-23T11:00:00Z",
  tsMs: Date.UTC(2026, 10, 23, 11),
  properties: null,
});

describe("batch order", () => {
  it('property: code point order is the byte order of the UTF-8 text (PostgreSQL\'s COLLATE "C")', () => {
    const s = fc.string({ unit: "grapheme", maxLength: 8 });
    fc.assert(
      fc.property(s, s, (a, b) => {
        const bytes = Math.sign(Buffer.compare(Buffer.from(a), Buffer.from(b)));
        expect(Math.sign(compareCodePoints(a, b))).toBe(bytes);
      }),
      { numRuns: 10_000 },
    );
    expect(compareCodePoints("\uffff", "😀")).toBeLessThan(0);
    expect("\uffff" < "😀").toBe(false);
  });

  it("property: distinctInKeyOrder keeps the first of each key, in (customer, id) byte order", () => {
    const part = fc.constantFrom("a", "b", "ab", "a b", "\uffff", "😀", "é");
    fc.assert(
      fc.property(fc.array(fc.tuple(part, part), { maxLength: 40 }), (pairs) => {
        const events = pairs.map(([c, id], i) => ev(c, id, String(i)));
        const out = distinctInKeyOrder(events);
        const key = (e: ValidEvent) => Buffer.concat([Buffer.from(e.customer), Buffer.from([0]), Buffer.from(e.id)]);
        for (let i = 1; i < out.length; i++) {
          expect(Buffer.compare(key(out[i - 1] as ValidEvent), key(out[i] as ValidEvent))).toBeLessThan(0);
        }
        const firsts = new Map<string, string>();
        for (const e of events)
          if (!firsts.has(`${e.customer}\u0000${e.id}`)) firsts.set(`${e.customer}\u0000${e.id}`, e.value);
        expect(out.length).toBe(firsts.size);
        for (const e of out) expect(e.value).toBe(firsts.get(`${e.customer}\u0000${e.id}`));
        const customers = customersInOrder(out);
        expect(new Set(customers).size).toBe(customers.length);
      }),
    );
  });

  it("when rows are encoded for binary COPY, then timestamps are server microseconds and decimals base-10000 digits", () => {
    const at = (s: string) => pgMicros(s, Date.parse(s));
    expect(at("2000-01-01T00:00:00Z")).toBe(0);
    expect(at("2000-01-01T00:00:01.000001Z")).toBe(1_000_001);
    expect(at("1999-12-31T23:59:59.9999995Z")).toBe(0); // rounded half to even, into the next second
    expect(at("2000-01-01T01:00:00.5+01:00")).toBe(500_000);
    const one = [{ ...ev("c", "i", "-12345.6"), ts: "2000-01-01T00:00:01.5Z", tsMs: 946_684_801_500 }];
    const hashes = keyHashes(one);
    const { events, keys } = encodeBinaryBatch(one, new Date(946_684_802_000), hashes, [0]);
    // The key: SHA-256("c\0i")'s first 16 bytes as h and h2, t = 1 (the second of the timestamp), r = 2 (of the
    // arrival).
    const digest = createHash("sha256").update("c\u0000i").digest("hex");
    expect(hashes.toString("hex")).toBe(digest.slice(0, 32));
    expect(keys.subarray(19).toString("hex")).toBe(
      [
        "0004",
        `00000008${digest.slice(0, 16)}`,
        `00000008${digest.slice(16, 32)}`,
        "0000000400000001",
        "0000000400000002",
        "ffff",
      ].join(""),
    );
    const row = events.subarray(19, events.length - 2);
    // 8 fields; ts = 1.5 s; "c"; "calls"; numeric: 3 digits, weight 1, negative, scale 1: 1 2345 6000; "i"; NULL; 0;
    // dimension set 0 (an int4).
    expect(row.toString("hex")).toBe(
      [
        "0008",
        "00000008000000000016e360",
        "0000000163",
        "0000000563616c6c73",
        "0000000e0003000140000001000109291770",
        "0000000169",
        "ffffffff",
        "0000000800000000001e8480",
        "0000000400000000",
      ].join(""),
    );
    expect(events.subarray(events.length - 2).toString("hex")).toBe("ffff");
  });
});
