// Generators of fuzz requests (fast-check) for test/fuzz.test.ts, and the contract every answer must keep.
import { gzipSync } from "node:zlib";
import fc from "fast-check";
import type { RawRequest, RawResponse } from "./http.js";

export const CUSTOMERS = ["cust_a", "cust_b", "ops@example.com", "Ünïcødé 客户", "'; DROP TABLE customers; --"];
const METERS = ["api_calls", "storage_gb", "events_seen", "temperature"];
const PLANS = ["pro", "basic"];
const JOBS = ["refresh-rollups", "evaluate-limits", "prune-expired", "finalize-invoices", "no-such-job"];
export const NOW = Date.now();
export const DAY = 86_400_000;

// ---- values ---------------------------------------------------------------------------------------------------

const oddStrings = [
  "",
  " ",
  "'; DROP TABLE customers; --",
  '" OR 1=1 --',
  "$1",
  "\\",
  "\\x00",
  "%",
  "%00",
  "\u0000",
  "\ud800",
  "\udfff",
  "\uffff",
  "\u202e",
  "💥",
  "ᄀᄀᄀ",
  "٣",
  "\t",
  "\r\n",
  "=cmd|' /C calc'!A0",
  "+1",
  "-1",
  "@SUM(A1)",
  "../../etc/passwd",
  "__proto__",
  "constructor",
  "toString",
  "null",
  "true",
  "NaN",
  "Infinity",
  "1e400",
  "-0",
  "a".repeat(129),
  "x".repeat(70_000),
];
const printableAscii = fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c));

const oddString = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...oddStrings) },
  { weight: 2, arbitrary: fc.string({ unit: "binary", maxLength: 40 }) },
  { weight: 2, arbitrary: fc.string({ unit: "grapheme", maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: "binary-ascii", maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ maxLength: 300 }) },
);

const anyValue: fc.Arbitrary<unknown> = fc.oneof(
  oddString,
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.jsonValue({ maxDepth: 3 }),
  fc.object({ maxDepth: 2 }),
);

const plausibleTime = fc.oneof(
  fc.integer({ min: NOW - 40 * DAY, max: NOW + DAY }).map((ms) => new Date(ms).toISOString().replace(/\.\d+Z$/, "Z")),
  fc.constantFrom(
    "2026-02-30T00:00:00Z",
    "2026-01-01T24:00:00Z",
    "2026-01-01T00:00:00+25:00",
    "2026-01-01T00:00:00.1234567891Z",
    "0000-01-01T00:00:00Z",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999999Z",
    "1969-12-31T23:59:59-23:59",
    "2026-01-01",
    "2026-01-01t00:00:00z",
    "2026-01-01T00:00:00",
  ),
);

const plausibleDecimal = fc.oneof(
  fc.constantFrom("1", "0.5", "-3", "0", "-0", "123456789012345678", "0.000000001", "1.0000000001", "1e3", " 1", "1."),
  fc.integer().map(String),
  fc.double({ noNaN: true }).map(String),
  fc.integer({ min: 0, max: 1_000 }),
  fc.double(),
);

const eventArb = (valid: boolean): fc.Arbitrary<Record<string, unknown>> =>
  valid
    ? fc.record(
        {
          id: fc.oneof(fc.uuid(), fc.string({ minLength: 1, maxLength: 128, unit: "grapheme" })),
          customer: fc.oneof(
            fc.constantFrom(...CUSTOMERS),
            fc.string({ unit: printableAscii, minLength: 1, maxLength: 128 }),
          ),
          meter: fc.constantFrom(...METERS),
          value: fc.oneof(fc.integer({ min: 0, max: 1000 }), fc.constantFrom("1", "2.5", "0.000000001", "7")),
          timestamp: fc.integer({ min: NOW - 30 * DAY, max: NOW }).map((ms) => new Date(ms).toISOString()),
          properties: fc.dictionary(
            fc.string({ minLength: 1, maxLength: 64 }),
            oddString.map((s) => s.slice(0, 1024)),
            {
              maxKeys: 4,
            },
          ),
        },
        { requiredKeys: ["id", "customer", "meter"] },
      )
    : fc.record(
        {
          id: fc.oneof(fc.uuid(), fc.string({ maxLength: 20 }), anyValue),
          customer: fc.oneof(fc.constantFrom(...CUSTOMERS), anyValue),
          meter: fc.oneof(fc.constantFrom(...METERS, "nope"), anyValue),
          value: fc.oneof(plausibleDecimal, anyValue),
          timestamp: fc.oneof(plausibleTime, anyValue),
          properties: fc.oneof(fc.dictionary(oddString, oddString, { maxKeys: 20 }), anyValue),
          custmer: anyValue,
        },
        { requiredKeys: [] },
      );

const eventsBody = fc.oneof(
  { weight: 3, arbitrary: fc.array(eventArb(true), { minLength: 1, maxLength: 8 }).map((events) => ({ events })) },
  { weight: 4, arbitrary: fc.array(eventArb(false), { maxLength: 8 }).map((events) => ({ events })) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.array(eventArb(true), { maxLength: 4 }), eventArb(false))
      .map(([good, bad]) => ({ events: [...good, bad] })),
  },
  { weight: 1, arbitrary: anyValue },
  { weight: 1, arbitrary: fc.record({ events: anyValue, extra: anyValue }, { requiredKeys: [] }) },
);

/** Numbers as JSON text (exponents, huge, tiny) where JSON.stringify would never write them. */
const numberText = fc.oneof(
  fc.constantFrom(
    "1e3",
    "1E3",
    "1e+3",
    "1e-3",
    "-1e-7",
    "1e400",
    "-1e400",
    "1e-400",
    "0e0",
    "1.5e1",
    "-0",
    "-0.0",
    "123456789012345678901234567890",
    `1${"0".repeat(400)}`,
    "0.1e-99999",
    "1.0000000000000000000001",
  ),
  fc.tuple(fc.integer({ min: -999, max: 999 }), fc.integer({ min: -400, max: 400 })).map(([m, e]) => `${m}e${e}`),
);
const exponentBody = fc
  .tuple(
    fc.constantFrom(...METERS),
    numberText,
    fc.constantFrom("value", "id", "customer", "timestamp", "meter", "properties"),
    fc.uuid(),
  )
  .map(([meter, n, field, id]) => {
    const e: Record<string, string> = { id: JSON.stringify(id), customer: '"cust_a"', meter: JSON.stringify(meter) };
    e[field] = n;
    return `{"events":[{${Object.entries(e)
      .map(([k, v]) => `"${k}":${v}`)
      .join(",")}}]}`;
  });

const deepBody = fc
  .tuple(fc.integer({ min: 1, max: 20_000 }), fc.constantFrom("array", "object", "properties"))
  .map(([n, kind]) =>
    kind === "array"
      ? `{"events":${"[".repeat(n)}${"]".repeat(n)}}`
      : kind === "object"
        ? `{"events":[${'{"a":'.repeat(n)}1${"}".repeat(n)}]}`
        : `{"events":[{"id":"deep","customer":"cust_a","meter":"api_calls","properties":${'{"a":'.repeat(n)}"x"${"}".repeat(n)}}]}`,
  );

const jsonText = fc.oneof(
  { weight: 6, arbitrary: eventsBody.map((b) => JSON.stringify(b) ?? "") },
  { weight: 2, arbitrary: exponentBody },
  { weight: 1, arbitrary: deepBody },
  { weight: 1, arbitrary: fc.json({ maxDepth: 4 }) },
  { weight: 1, arbitrary: fc.string({ maxLength: 200 }) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(
        eventsBody.map((b) => JSON.stringify(b) ?? ""),
        fc.nat(),
      )
      .map(([t, n]) => t.slice(0, n % (t.length + 1))),
  },
);

const badUtf8 = fc.constantFrom(
  [0xff],
  [0xfe, 0xff],
  [0xc0, 0x80],
  [0xc3],
  [0xed, 0xa0, 0x80],
  [0x80],
  [0xf8, 0x88, 0x80, 0x80, 0x80],
  [0xe2, 0x82],
  [0xf4, 0x90, 0x80, 0x80],
  [0x00],
);

/** Bytes of a text with invalid UTF-8 sequences spliced in. */
const withBadUtf8 = (text: fc.Arbitrary<string>) =>
  fc.tuple(text, fc.array(fc.tuple(badUtf8, fc.nat()), { minLength: 1, maxLength: 3 })).map(([t, inserts]) => {
    let buf = Buffer.from(t);
    for (const [bytes, at] of inserts) {
      const i = at % (buf.length + 1);
      buf = Buffer.concat([buf.subarray(0, i), Buffer.from(bytes), buf.subarray(i)]);
    }
    return buf;
  });

const jsonContentType = fc.oneof(
  { weight: 8, arbitrary: fc.constant("application/json") },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      "application/json; charset=utf-8",
      "application/JSON",
      "application/json; charset=latin1",
      "application/json; charset=utf-16",
      "application/problem+json",
      "application/vnd.api+json",
      "application/x-ndjson",
      "text/plain",
      "text/csv",
      "",
      "application/x-www-form-urlencoded",
      "multipart/form-data; boundary=x",
      "*/*",
      "application/json; charset=",
      "application/json;;;",
    ),
  },
  { weight: 1, arbitrary: fc.string({ unit: printableAscii, maxLength: 60 }) },
);

type Encoded = { body: Buffer | string; encoding?: string };

/** Sometimes gzip (whole, truncated or corrupted), sometimes an encoding nobody supports. */
const encode = (body: Buffer | string) =>
  fc.oneof(
    { weight: 8, arbitrary: fc.constant<Encoded>({ body }) },
    { weight: 2, arbitrary: fc.constant<Encoded>({ body: gzipSync(body), encoding: "gzip" }) },
    {
      weight: 2,
      arbitrary: fc.nat().map((n): Encoded => {
        const z = gzipSync(body);
        return { body: z.subarray(0, n % z.length), encoding: "gzip" };
      }),
    },
    {
      weight: 1,
      arbitrary: fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })).map(([n, x]): Encoded => {
        const z = Buffer.from(gzipSync(body));
        const i = 10 + (n % Math.max(1, z.length - 10));
        if (i < z.length) z[i] = (z[i] as number) ^ x;
        return { body: z, encoding: "gzip" };
      }),
    },
    {
      weight: 1,
      arbitrary: fc
        .constantFrom("deflate", "br", "gzip, gzip", "x-gzip", "identity", "GZIP", "compress", "zstd", "*")
        .map((encoding): Encoded => ({ body, encoding })),
    },
    {
      weight: 1,
      arbitrary: fc
        .uint8Array({ maxLength: 300 })
        .map((b): Encoded => ({ body: Buffer.concat([Buffer.from([0x1f, 0x8b]), b]), encoding: "gzip" })),
    },
  );

// ---- requests -------------------------------------------------------------------------------------------------

/** encodeURIComponent, except that a lone surrogate becomes the (invalid) UTF-8 of its code unit instead of throwing. */
function pct(s: string): string {
  try {
    return encodeURIComponent(s);
  } catch {
    return Array.from(s, (ch) => {
      const c = ch.charCodeAt(0);
      if (ch.length > 1 || c < 0xd800 || c > 0xdfff) return encodeURIComponent(ch);
      return [0xe0 | (c >> 12), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f)]
        .map((b) => `%${b.toString(16).toUpperCase()}`)
        .join("");
    }).join("");
  }
}

/** A path segment: known ids, encoded unicode, % escapes that do not decode, raw odd characters, very long. */
const pathChars = fc.constantFrom(..."abcXYZ019-_.~!$&'()*+,;=:@%/".split(""));
const segment = (known: string[]) =>
  fc.oneof(
    { weight: 5, arbitrary: fc.constantFrom(...known).map(pct) },
    { weight: 2, arbitrary: fc.string({ unit: "binary", minLength: 1, maxLength: 40 }).map(pct) },
    { weight: 1, arbitrary: oddString.filter((s) => s.length > 0 && s.length < 500).map(pct) },
    {
      weight: 2,
      arbitrary: fc.constantFrom(
        "%",
        "%zz",
        "%E0%A4%A",
        "%C0%AF",
        "%FF",
        "%00",
        "%2F",
        "%2e%2e",
        "..",
        ".",
        "%25",
        "%F0%9F%98",
        "%ED%A0%80",
        "a%",
        "%%",
        "%u0041",
        "%0A",
        "%0D%0A",
        "%7F",
        "%20",
        "+",
        "%09",
        "x".repeat(129),
        "y".repeat(2_000),
      ),
    },
    { weight: 1, arbitrary: fc.string({ unit: pathChars, minLength: 1, maxLength: 60 }) },
  );

const pathOf = (template: string, segs: string[]) => {
  let i = 0;
  return template.replace(/\{\w+\}/g, () => segs[i++] ?? "x");
};

const queryValue = (plausible: fc.Arbitrary<string>) =>
  fc.oneof(
    { weight: 5, arbitrary: plausible.map(pct) },
    { weight: 1, arbitrary: oddString.filter((s) => s.length < 500).map(pct) },
    { weight: 1, arbitrary: fc.constantFrom("%", "%zz", "%E0%A4%A", "%FF", "%ED%A0%80", "%00", "a%2", "%%", "+") },
    { weight: 1, arbitrary: fc.string({ unit: pathChars, maxLength: 30 }) },
  );

/** key=value pairs: the route's keys with plausible values, unknown keys, repeated keys, bare keys. */
const queryString = (fields: Record<string, fc.Arbitrary<string>>) => {
  const keys = Object.keys(fields);
  const pair = fc.oneof(
    {
      weight: 6,
      arbitrary: fc
        .constantFrom(...keys)
        .chain((k) => queryValue(fields[k] as fc.Arbitrary<string>).map((v) => `${k}=${v}`)),
    },
    {
      weight: 1,
      arbitrary: fc.tuple(oddString, oddString).map(([k, v]) => `${pct(k)}=${pct(v)}`),
    },
    {
      weight: 1,
      arbitrary: fc.constantFrom(...keys, "", "=", "&", "a[b]=c", "__proto__=1", "constructor[prototype]=x"),
    },
  );
  return fc.oneof(
    // every field once, plausible: gets past validation to the database
    {
      weight: 3,
      arbitrary: fc
        .tuple(...keys.map((k) => queryValue(fields[k] as fc.Arbitrary<string>).map((v) => `${k}=${v}`)))
        .map((pairs) => `?${pairs.join("&")}`),
    },
    {
      weight: 3,
      arbitrary: fc.array(pair, { maxLength: 8 }).map((pairs) => (pairs.length ? `?${pairs.join("&")}` : "")),
    },
  );
};

const timeText = plausibleTime;
const period = fc.oneof(
  fc.integer({ min: 0, max: 24 }).map((m) => new Date(NOW - m * 30 * DAY).toISOString().slice(0, 7)),
  fc.constantFrom("0000-01", "0001-01", "9999-12", "2026-13", "2026-00", "2026-1", "202611", "2026-11-01"),
);
const granularity = fc.constantFrom("hour", "day", "month", "week", "HOUR", "");

export interface Fuzzed extends RawRequest {
  key?: string;
}

function jsonRequest(method: string, path: string, body: unknown, contentType?: string): fc.Arbitrary<Fuzzed> {
  return fc
    .tuple(
      fc.oneof(
        { weight: 6, arbitrary: fc.constant(JSON.stringify(body) ?? "null") },
        { weight: 1, arbitrary: fc.json({ maxDepth: 3 }) },
        { weight: 1, arbitrary: withBadUtf8(fc.constant(JSON.stringify(body) ?? "")) },
        { weight: 1, arbitrary: deepBody },
        { weight: 1, arbitrary: fc.string({ maxLength: 100 }) },
      ),
      contentType === undefined ? jsonContentType : fc.constant(contentType),
    )
    .chain(([text, type]) =>
      encode(text).map(
        (e): Fuzzed => ({
          method,
          path,
          headers: { "Content-Type": type, ...(e.encoding ? { "Content-Encoding": e.encoding } : {}) },
          body: e.body,
        }),
      ),
    );
}

const fuzzBody = (shape: Record<string, fc.Arbitrary<unknown>>) =>
  fc.oneof(
    { weight: 4, arbitrary: fc.record(shape, { requiredKeys: [] }) },
    {
      weight: 3,
      arbitrary: fc.record(
        Object.fromEntries(Object.entries(shape).map(([k, a]) => [k, fc.oneof({ weight: 3, arbitrary: a }, anyValue)])),
        { requiredKeys: [] },
      ),
    },
    { weight: 1, arbitrary: anyValue },
  );

const customerSeg = segment(CUSTOMERS);
const meterSeg = segment(METERS);
const planSeg = segment(PLANS);
const decimalText = fc.oneof(plausibleDecimal.map(String), fc.constantFrom("1000", "0.001", "99.99"));
const tiers = fc.array(
  fc.record(
    { up_to: fc.oneof(decimalText, fc.constant(null)), unit_price: decimalText, flat_price: decimalText },
    { requiredKeys: [] },
  ),
  { maxLength: 5 },
);
const limitBody = fuzzBody({
  soft: fc.oneof(decimalText, fc.constant(null)),
  hard: fc.oneof(decimalText, fc.constant(null)),
  unit: fc.constantFrom("quantity", "amount", "money"),
});

export const setupRequests: fc.Arbitrary<Fuzzed> = fc.oneof(
  fc
    .tuple(
      meterSeg,
      fuzzBody({
        name: oddString,
        unit: oddString,
        aggregation: fc.constantFrom("sum", "count", "max", "last", "avg"),
        stripe_event_name: fc.oneof(oddString, fc.constant(null)),
        stripe_scale: decimalText,
      }),
    )
    .chain(([k, b]) => jsonRequest("PUT", `/v1/meters/${k}`, b)),
  fc.constant<Fuzzed>({ method: "GET", path: "/v1/meters" }),
  fc
    .tuple(
      customerSeg,
      fuzzBody({
        name: fc.oneof(oddString, fc.constant(null)),
        email: fc.oneof(fc.emailAddress(), oddString, fc.constant(null)),
        stripe_customer_id: fc.oneof(oddString, fc.constant(null)),
      }),
    )
    .chain(([id, b]) => jsonRequest("PUT", `/v1/customers/${id}`, b)),
  customerSeg.map((id): Fuzzed => ({ method: "GET", path: `/v1/customers/${id}` })),
  fc
    .tuple(
      planSeg,
      fuzzBody({ name: oddString, currency: fc.constantFrom("USD", "usd", "EUR", "JPY", "KWD", "XXX", "") }),
    )
    .chain(([k, b]) => jsonRequest("PUT", `/v1/plans/${k}`, b)),
  fc.constant<Fuzzed>({ method: "GET", path: "/v1/plans" }),
  planSeg.map((k): Fuzzed => ({ method: "GET", path: `/v1/plans/${k}` })),
  fc
    .tuple(
      planSeg,
      fuzzBody({
        meter: fc.constantFrom(...METERS, "nope"),
        effective_from: timeText,
        model: fc.constantFrom("per_unit", "graduated", "volume", "package", "free"),
        unit_price: decimalText,
        tiers,
        package_size: decimalText,
        package_price: decimalText,
        base_fee: decimalText,
      }),
    )
    .chain(([k, b]) => jsonRequest("POST", `/v1/plans/${k}/prices`, b)),
  fc
    .tuple(customerSeg, fuzzBody({ plan: fc.constantFrom(...PLANS, "nope"), start: timeText }))
    .chain(([id, b]) => jsonRequest("PUT", `/v1/customers/${id}/subscription`, b)),
  fc
    .tuple(customerSeg, meterSeg, limitBody)
    .chain(([c, m, b]) => jsonRequest("PUT", `/v1/customers/${c}/limits/${m}`, b)),
  fc
    .tuple(customerSeg, meterSeg)
    .map(([c, m]): Fuzzed => ({ method: "DELETE", path: `/v1/customers/${c}/limits/${m}` })),
  fc.tuple(planSeg, meterSeg, limitBody).chain(([p, m, b]) => jsonRequest("PUT", `/v1/plans/${p}/limits/${m}`, b)),
  fc.tuple(planSeg, meterSeg).map(([p, m]): Fuzzed => ({ method: "DELETE", path: `/v1/plans/${p}/limits/${m}` })),
  // Valid webhook URLs point at a closed local port: a fuzzed alert must not reach the network.
  fuzzBody({
    url: fc.oneof(
      fc.constantFrom(
        "http://127.0.0.1:9/hook",
        "https://127.0.0.1:9/x?y=1",
        "ftp://127.0.0.1/",
        "javascript:alert(1)",
      ),
      oddString,
    ),
  }).chain((b) => jsonRequest("POST", "/v1/webhook-endpoints", b)),
  fuzzBody({
    scopes: fc.oneof(fc.subarray(["read", "ingest", "admin"]), fc.array(oddString, { maxLength: 4 })),
    customer: fc.oneof(fc.constantFrom(...CUSTOMERS), oddString, fc.constant(null)),
  }).chain((b) => jsonRequest("POST", "/v1/api-keys", b)),
  // Never the fuzzer's own admin key (key_env_admin): its revocation would turn the rest into 401s.
  segment(["key_nope", "key_", "key_env_admin2"]).map(
    (id): Fuzzed => ({ method: "DELETE", path: `/v1/api-keys/${id}` }),
  ),
  segment(JOBS.filter((j) => j !== "refresh-rollups")).map(
    (name): Fuzzed => ({ method: "POST", path: `/v1/jobs/${name}/run` }),
  ),
);

const usageFields = {
  customer: fc.constantFrom(...CUSTOMERS),
  meter: fc.constantFrom(...METERS, "nope"),
  granularity,
  from: timeText,
  to: timeText,
};

export const readRequests: fc.Arbitrary<Fuzzed> = fc
  .tuple(
    fc.oneof(
      queryString(usageFields).map((q) => `/v1/usage${q}`),
      queryString({ customer: usageFields.customer, granularity, from: timeText, to: timeText }).map(
        (q) => `/v1/usage/export${q}`,
      ),
      fc.tuple(customerSeg, queryString({ period })).map(([c, q]) => `/v1/customers/${c}/summary${q}`),
      fc.tuple(customerSeg, queryString({ period })).map(([c, q]) => `/v1/customers/${c}/invoice${q}`),
      queryString({ customer: usageFields.customer, period }).map((q) => `/v1/alerts${q}`),
      queryString({
        customer: usageFields.customer,
        period,
        status: fc.constantFrom("draft", "final", "paid", ""),
        limit: fc.constantFrom("1", "1000", "0", "1001", "-1", "x"),
      }).map((q) => `/v1/invoices${q}`),
      segment(["in_nope", "in_", "x"]).map((id) => `/v1/invoices/${id}`),
      fc.tuple(customerSeg, meterSeg).map(([c, m]) => `/v1/entitlements/${c}/${m}`),
      fc.tuple(customerSeg, segment(["evt-1", "evt-2", "nope"])).map(([c, id]) => `/v1/events/${c}/${id}`),
    ),
    fc.constantFrom("admin", "admin", "read", "boundRead", "ingest"),
  )
  .map(([path, key]): Fuzzed => ({ method: "GET", path, key }));

export const ingestJsonRequests: fc.Arbitrary<Fuzzed> = fc
  .tuple(jsonText, jsonContentType, fc.constantFrom("admin", "ingest", "boundIngest"))
  .chain(([text, type, key]) =>
    encode(text).map(
      (e): Fuzzed => ({
        method: "POST",
        path: "/v1/events",
        key,
        headers: { "Content-Type": type, ...(e.encoding ? { "Content-Encoding": e.encoding } : {}) },
        body: e.body,
      }),
    ),
  );

const ndjsonLine = fc.oneof(
  { weight: 5, arbitrary: eventArb(true).map((e) => JSON.stringify(e)) },
  { weight: 3, arbitrary: eventArb(false).map((e) => JSON.stringify(e) ?? "") },
  { weight: 1, arbitrary: fc.json({ maxDepth: 2 }) },
  { weight: 1, arbitrary: fc.constantFrom("", " ", "\r", "{", "[]", "null", '{"events":[]}', "x".repeat(70_000)) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(numberText, fc.uuid())
      .map(([n, id]) => `{"id":"${id}","customer":"cust_a","meter":"api_calls","value":${n}}`),
  },
  { weight: 1, arbitrary: fc.string({ maxLength: 80 }) },
);

export const ndjsonRequests: fc.Arbitrary<Fuzzed> = fc
  .tuple(
    fc.array(ndjsonLine, { maxLength: 12 }),
    fc.constantFrom("\n", "\r\n"),
    fc.boolean(),
    fc.constantFrom(
      "application/x-ndjson",
      "application/x-ndjson",
      "application/ndjson",
      "application/jsonl",
      "application/x-ndjson; charset=utf-8",
    ),
  )
  .chain(([lines, eol, trailing, type]) => {
    const text = lines.join(eol) + (trailing ? eol : "");
    return fc
      .oneof(
        { weight: 4, arbitrary: fc.constant<Buffer | string>(text) },
        { weight: 1, arbitrary: withBadUtf8(fc.constant(text)) },
      )
      .chain((body) => encode(body))
      .map(
        (e): Fuzzed => ({
          method: "POST",
          path: "/v1/events",
          headers: { "Content-Type": type, ...(e.encoding ? { "Content-Encoding": e.encoding } : {}) },
          body: e.body,
        }),
      );
  });

/** Raw bytes and random methods/content types on the ingest path. */
export const ingestByteRequests: fc.Arbitrary<Fuzzed> = fc
  .tuple(
    fc.oneof(
      fc.uint8Array({ maxLength: 2_000 }).map((b) => Buffer.from(b)),
      withBadUtf8(jsonText),
      fc.string({ unit: "binary", maxLength: 500 }),
    ),
    fc.oneof(jsonContentType, fc.constantFrom("application/x-ndjson", "application/octet-stream")),
    fc.constantFrom("POST", "POST", "POST", "PUT", "PATCH", "DELETE", "GET"),
  )
  .chain(([body, type, method]) =>
    encode(body).map(
      (e): Fuzzed => ({
        method,
        path: "/v1/events",
        headers: { "Content-Type": type, ...(e.encoding ? { "Content-Encoding": e.encoding } : {}) },
        body: e.body,
      }),
    ),
  );

// ---- the contract every answer keeps ------------------------------------------------------------------------

const STACK = /\n\s+at .+:\d+:\d+|node_modules|\/src\/.+\.ts/;

export function describeRequest(r: Fuzzed): string {
  const body = r.body === undefined ? "" : Buffer.isBuffer(r.body) ? r.body.toString("base64") : r.body;
  return `${r.method} ${r.path.slice(0, 300)} ${JSON.stringify(r.headers ?? {})} body(${body.length}): ${body.slice(0, 300)}`;
}

/** The contract every answer must keep; returns a description of the breach, or undefined. */
export function breach(r: Fuzzed, res: RawResponse): string | undefined {
  if (res.status >= 500 || res.status < 200 || (res.status >= 300 && res.status < 400)) return `status ${res.status}`;
  if (STACK.test(res.text)) return "a stack trace or source path in the body";
  if (res.status < 400 || r.method === "HEAD") return undefined;
  if (!/^application\/problem\+json/.test(String(res.headers["content-type"]))) {
    return `content-type ${res.headers["content-type"]}`;
  }
  let p: { type?: unknown; title?: unknown; status?: unknown; detail?: unknown };
  try {
    p = JSON.parse(res.text);
  } catch {
    return "a body that is not JSON";
  }
  if (typeof p.type !== "string" || typeof p.title !== "string" || typeof p.detail !== "string") {
    return "no type/title/detail";
  }
  if (p.status !== res.status) return `body status ${String(p.status)}`;
  return undefined;
}

/** Every route of the route table, with random segments, query strings, methods and bodies. */
export function anyRouteRequests(routes: { method: string; path: string }[]): fc.Arbitrary<Fuzzed> {
  const methods = ["GET", "PUT", "POST", "DELETE", "PATCH", "OPTIONS", "HEAD"];
  return fc
    .tuple(
      fc.constantFrom(...routes),
      fc.array(segment([...CUSTOMERS, ...METERS, ...PLANS]), { minLength: 3, maxLength: 3 }),
      fc.oneof(fc.constant(""), queryString({ customer: usageFields.customer, period, from: timeText })),
      fc.oneof({ weight: 4, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.constantFrom(...methods) }),
      fc.oneof(fc.constant(undefined), anyValue),
    )
    .chain(([route, segs, q, method, body]) => {
      const path = pathOf(route.path, segs) + q;
      const m = method ?? route.method.toUpperCase();
      return body === undefined || m === "GET" || m === "HEAD"
        ? fc.constant<Fuzzed>({ method: m, path })
        : jsonRequest(m, path, body);
    });
}
