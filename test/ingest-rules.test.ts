// The pure rules of an event: decimal values, RFC 3339 timestamps, properties, COPY encoding, line splitting.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { lines } from "../src/ingest/body.js";
import { copyField, copyRow } from "../src/ingest/copyText.js";
import { checkProperties, parseTimestamp, parseValue } from "../src/ingest/event.js";
import { validateEvent } from "../src/ingest/validate.js";

describe("parseValue", () => {
  it.each([
    [undefined, "1"],
    [0, "0"],
    [3, "3"],
    [-2.5, "-2.5"],
    [0.1, "0.1"],
    [1e-7, "0.0000001"],
    ["1.500", "1.5"],
    ["007", "7"],
    ["-0", "0"],
    ["-0.000", "0"],
    ["0.000000001", "0.000000001"],
    ["123456789012345678", "123456789012345678"],
    ["123456789.123456789", "123456789.123456789"],
    ["100000000000000000.0", "100000000000000000"],
  ])("when the value is %j, then it is stored as %s", (input, expected) => {
    expect(parseValue(input)).toEqual({ ok: true, value: expected });
  });

  it.each([
    ["1e5", /not a decimal number/],
    ["0x10", /not a decimal number/],
    [" 1", /not a decimal number/],
    ["1.", /not a decimal number/],
    [".5", /not a decimal number/],
    ["+1", /not a decimal number/],
    ["", /not a decimal number/],
    ["0.0000000001", /more than 9 decimal places/],
    ["1234567890123456789", /more than 18 significant digits/],
    ["1000000000000000000.0", /more than 18 significant digits/],
    [1e21, /more than 18 significant digits/],
    ["12345678901.23456789", /more than 18 significant digits/],
    [Number.NaN, /finite/],
    [Number.POSITIVE_INFINITY, /finite/],
    [true, /decimal number or a decimal string/],
    [null, /decimal number or a decimal string/],
    [1234567890.1234567, /not exact; send the value as a decimal string/],
    [2 ** 53 + 2, /not exact|more than/], // 9007199254740994: 16 digits, past what doubles hold exactly
  ])("when the value is %j, then it is refused (%s)", (input, message) => {
    const r = parseValue(input);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.message).toMatch(message);
  });

  it("property: a decimal string within the limits is accepted and keeps its numeric value", () => {
    fc.assert(
      fc.property(
        fc.boolean(),
        fc.bigInt({ min: 0n, max: 999_999_999n }),
        fc.integer({ min: 0, max: 999_999_999 }),
        (neg, int, frac) => {
          const text = `${neg ? "-" : ""}${int}.${String(frac).padStart(9, "0")}`;
          const r = parseValue(text);
          expect(r.ok).toBe(true);
          if (r.ok) {
            const scaled = (s: string) => {
              const [i = "0", f = ""] = s.replace("-", "").split(".");
              const v = BigInt(i) * 1_000_000_000n + BigInt(f.padEnd(9, "0"));
              return s.startsWith("-") ? -v : v;
            };
            expect(scaled(r.value)).toBe(scaled(text));
            expect(r.value).not.toMatch(/^-?0\d|\.\d*0$|^-0$/);
          }
        },
      ),
    );
  });

  it("property: a JSON number with at most 15 significant digits is exactly what was written", () => {
    fc.assert(
      fc.property(fc.integer({ min: -999_999_999, max: 999_999_999 }), fc.integer({ min: 0, max: 6 }), (n, places) => {
        const text = (n / 10 ** places).toFixed(places);
        const r = parseValue(Number(text));
        expect(r.ok).toBe(true);
        if (r.ok) expect(Number(r.value)).toBe(Number(text));
      }),
    );
  });
});

describe("parseTimestamp", () => {
  it.each([
    ["2026-11-01T00:00:00Z", Date.UTC(2026, 10, 1)],
    ["2026-11-01t00:00:00z", Date.UTC(2026, 10, 1)],
    ["2026-11-01T01:30:00+01:30", Date.UTC(2026, 10, 1)],
    ["2026-10-31T19:00:00-05:00", Date.UTC(2026, 10, 1)],
    ["2024-02-29T12:00:00.123456Z", Date.UTC(2024, 1, 29, 12, 0, 0, 123)],
    ["2026-11-01T00:00:00.5Z", Date.UTC(2026, 10, 1, 0, 0, 0, 500)],
  ])("when the timestamp is %s, then it is accepted at that instant", (text, ms) => {
    const r = parseTimestamp(text);
    expect(r.ok).toBe(true);
    if (r.ok) expect(r.value.ms).toBe(ms);
  });

  it.each([
    "2026-11-01",
    "2026-11-01T00:00:00",
    "2026-11-01 00:00:00Z",
    "2026-02-29T00:00:00Z",
    "2026-13-01T00:00:00Z",
    "2026-04-31T00:00:00Z",
    "2026-11-01T24:00:00Z",
    "2026-11-01T23:60:00Z",
    "2026-11-01T00:00:00+25:00",
    "1730419200",
    "yesterday",
  ])("when the timestamp is %s, then it is refused", (text) => {
    expect(parseTimestamp(text).ok).toBe(false);
  });
});

describe("checkProperties", () => {
  it("when there are 16 keys, then they are accepted; 17 are refused", () => {
    const props = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, "v"]));
    expect(checkProperties(props(16))).toBeUndefined();
    expect(checkProperties(props(17))).toMatch(/at most 16/);
  });
  it("when a value is longer than 1024 characters, then it is refused", () => {
    expect(checkProperties({ a: "x".repeat(1025) })).toMatch(/longer than 1024/);
  });
});

describe("validateEvent", () => {
  const ctx = {
    aggregationOf: (m: string) => ({ calls: "sum", seats: "max", hits: "count", plan: "last" })[m] as never,
    nowMs: Date.UTC(2026, 10, 23, 12),
    maxAgeMs: 35 * 86_400_000,
    maxFutureMs: 300_000,
  };
  const base = { id: "e1", customer: "c1", meter: "calls" };

  it("when only id, customer and meter are given, then value is 1 and the timestamp is the receive time", () => {
    const v = validateEvent(base, 0, ctx);
    expect(v).toEqual({
      ok: true,
      event: {
        ...base,
        value: "1",
        ts: "2026-11-23T12:00:00.000Z",
        tsMs: ctx.nowMs,
        properties: null,
        propertyValues: null,
      },
    });
  });

  it.each([
    [{ ...base, value: -1, meter: "seats" }, "events[4].value", /only allowed on sum meters/],
    [{ ...base, value: -1, meter: "hits" }, "events[4].value", /only allowed on sum meters/],
    [{ ...base, meter: "nope" }, "events[4].meter", /unknown meter "nope"/],
    [{ ...base, timestamp: "2026-10-19T11:59:59.999Z" }, "events[4].timestamp", /more than 35 days in the past/],
    [{ ...base, timestamp: "2026-11-23T12:05:00.001Z" }, "events[4].timestamp", /more than 300 seconds in the future/],
    [{ ...base, id: "" }, "events[4].id", /1 to 128/],
    [{ ...base, id: "x".repeat(129) }, "events[4].id", /1 to 128/],
    [{ ...base, customer: "a\u0007b" }, "events[4].customer", /control characters/],
    [{ ...base, customer: "x".repeat(129) }, "events[4].customer", /1 to 128/],
    [{ ...base, properties: { a: 1 } }, "events[4].properties.a", /string/],
    [{ ...base, propertiez: {} }, "events[4].propertiez", /unknown field/],
    [{ id: "e1", meter: "calls" }, "events[4].customer", /./],
    [null, "events[4]", /./],
  ])("when the event is %j, then %s is named", (raw, field, message) => {
    const v = validateEvent(raw, 4, ctx);
    expect(v.ok).toBe(false);
    if (!v.ok) {
      const e = v.errors.find((x) => x.field === field);
      expect(e, JSON.stringify(v.errors)).toBeDefined();
      expect(e?.index).toBe(4);
      expect(e?.message).toMatch(message);
    }
  });

  it("when the timestamp is exactly at either edge of the window, then it is accepted", () => {
    expect(validateEvent({ ...base, timestamp: "2026-10-19T12:00:00Z" }, 0, ctx).ok).toBe(true);
    expect(validateEvent({ ...base, timestamp: "2026-11-23T12:05:00Z" }, 0, ctx).ok).toBe(true);
  });

  it("when a sum meter gets a negative correction, then it is accepted", () => {
    expect(validateEvent({ ...base, value: "-12.5" }, 0, ctx).ok).toBe(true);
  });

  it("when an event has several problems, then each is listed", () => {
    const v = validateEvent({ ...base, meter: "seats", value: "-1.0000000001", timestamp: "nope" }, 0, ctx);
    expect(v.ok).toBe(false);
    if (!v.ok) expect(v.errors.map((e) => e.field).sort()).toEqual(["events[0].timestamp", "events[0].value"]);
  });
});

describe("COPY text encoding", () => {
  it("when a field holds tabs, newlines, carriage returns or backslashes, then they are escaped", () => {
    expect(copyField("a\tb\nc\rd\\e")).toBe("a\\tb\\nc\\rd\\\\e");
    expect(copyField(null)).toBe("\\N");
    expect(copyRow(["1", null, "x"])).toBe("1\t\\N\tx\n");
  });
});

describe("NDJSON lines", () => {
  async function* chunks(parts: string[]) {
    for (const p of parts) yield Buffer.from(p);
  }
  const collect = async (parts: string[], max = 100) => {
    const out = [];
    for await (const l of lines(chunks(parts), max)) out.push(l);
    return out;
  };

  it("when lines are split across chunks, then they are put back together, with CRLF and a last line without newline", async () => {
    expect(await collect(['{"a"', ":1}\r\n{", '"b":2}\n', "\n", "last"])).toEqual([
      { number: 1, text: '{"a":1}' },
      { number: 2, text: '{"b":2}' },
      { number: 3, text: "" },
      { number: 4, text: "last" },
    ]);
  });

  it("when a line is longer than the limit, then it is reported without being held, and the next line is read", async () => {
    const out = await collect(["x".repeat(60), "y".repeat(60), "\nok\n"], 100);
    expect(out).toEqual([
      { number: 1, problem: "line is longer than 100 bytes" },
      { number: 2, text: "ok" },
    ]);
  });

  it("when a multi-byte character is split across chunks, then it decodes; invalid UTF-8 is reported", async () => {
    const euro = Buffer.from("€\n");
    async function* parts() {
      yield euro.subarray(0, 1);
      yield euro.subarray(1);
      yield Buffer.from([0xff, 0x0a]);
    }
    const out = [];
    for await (const l of lines(parts(), 100)) out.push(l);
    expect(out).toEqual([
      { number: 1, text: "€" },
      { number: 2, problem: "line is not valid UTF-8" },
    ]);
  });
});
