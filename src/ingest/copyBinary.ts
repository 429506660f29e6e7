// PostgreSQL's binary COPY format for the optimistic write path. Text COPY makes the server parse every timestamp
// and number of every row (two timestamps and a numeric per event in usage_events); in binary
// they arrive as the integers PostgreSQL stores, which takes about a third off its per-row COPY cost.
// Values are written exactly as the server would have read their text: timestamps to the microsecond with its
// rounding, decimals digit for digit (test/ingest-batch.test.ts and test/ingest-optimistic.test.ts compare).
import { KEY_BYTES } from "./keys.js";
import type { ValidEvent } from "./validate.js";

/** "PGCOPY\n\377\r\n\0", no flags, no header extension. */
const HEADER = Buffer.from([0x50, 0x47, 0x43, 0x4f, 0x50, 0x59, 0x0a, 0xff, 0x0d, 0x0a, 0x00, 0, 0, 0, 0, 0, 0, 0, 0]);
/** PostgreSQL counts time from 2000-01-01 UTC. */
const PG_EPOCH_MS = 946_684_800_000;
const NUMERIC_NEG = 0x4000;
const JSONB_VERSION = 1;
const POW10 = [1, 10, 100, 1000, 10_000, 100_000, 1_000_000];

/** Microseconds since 2000-01-01 of a validated RFC 3339 timestamp (`text`) whose instant in ms is `ms`. */
export function pgMicros(text: string, ms: number): number {
  // Validated timestamps are "YYYY-MM-DDTHH:MM:SS", then an optional fraction, then Z or an offset.
  if (text.charCodeAt(19) !== 0x2e) return (ms - PG_EPOCH_MS) * 1000;
  let end = 20;
  let digits = 0;
  while (end < text.length) {
    const d = text.charCodeAt(end) - 0x30;
    if (d < 0 || d > 9) break;
    if (end < 26) digits = digits * 10 + d;
    end++;
  }
  const places = end - 20;
  let micros: number;
  if (places <= 6) micros = digits * (POW10[6 - places] as number);
  // As the server does with more digits: strtod of the fraction, times 10^6, rounded half to even (rint).
  else micros = roundHalfEven(Number(text.slice(19, end)) * 1_000_000);
  // `ms` is the instant with the fraction truncated to milliseconds (Date.parse): take those back off.
  const fractionMs =
    places >= 3
      ? Math.floor(digits / (POW10[Math.min(places, 6) - 3] as number))
      : digits * (POW10[3 - places] as number);
  return (ms - fractionMs - PG_EPOCH_MS) * 1000 + micros;
}

function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Group w (base 10000) of the decimal digits value[first, end) whose point is at `dot`. */
function numericGroup(value: string, first: number, dot: number, w: number): number {
  let group = 0;
  for (let p = 4 * w + 3; p >= 4 * w; p--) {
    // Digit of 10^p: left of the point for p >= 0, right of it for p < 0.
    const k = p >= 0 ? dot - 1 - p : dot - p;
    const d = k >= first && k < value.length && k !== dot ? value.charCodeAt(k) - 0x30 : 0;
    group = group * 10 + d;
  }
  return group;
}

// Writers of one value at `at` in `b`, returning the position after it. Bytes are stored one by one: for the short
// values of an event that is several times cheaper than Buffer's write methods. The caller has made room.

function int16(b: Buffer, at: number, n: number): number {
  b[at] = (n >>> 8) & 0xff;
  b[at + 1] = n & 0xff;
  return at + 2;
}

function int32(b: Buffer, at: number, n: number): number {
  b[at] = (n >>> 24) & 0xff;
  b[at + 1] = (n >>> 16) & 0xff;
  b[at + 2] = (n >>> 8) & 0xff;
  b[at + 3] = n & 0xff;
  return at + 4;
}

/** A text value (or jsonb, given its version byte as `prefix`): length, then UTF-8. */
function text(b: Buffer, at: number, s: string, prefix = -1): number {
  let p = at + 4;
  if (prefix >= 0) b[p++] = prefix;
  const n = s.length;
  let i = 0;
  for (; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x80) break;
    b[p++] = c;
  }
  if (i < n) p += b.write(s.slice(i), p, "utf8");
  int32(b, at, p - at - 4);
  return p;
}

/** A timestamptz: int64 microseconds, as two 32-bit halves (exact below 2^53). */
function micros(b: Buffer, at: number, us: number): number {
  const high = Math.floor(us / 4_294_967_296);
  int32(b, at, 8);
  int32(b, at + 4, high);
  return int32(b, at + 8, us - high * 4_294_967_296);
}

/** A canonical decimal (parseValue's form) as a numeric: base-10000 digits, weight, sign and display scale. */
function numeric(b: Buffer, at: number, value: string): number {
  const negative = value.charCodeAt(0) === 0x2d;
  const first = negative ? 1 : 0;
  let dot = value.indexOf(".", first);
  if (dot < 0) dot = value.length;
  const scale = dot === value.length ? 0 : value.length - dot - 1;
  // Groups of four digits around the decimal point: group w holds the digits of 10^(4w+3) … 10^(4w).
  let high = Math.floor((dot - first - 1) / 4);
  let low = scale === 0 ? 0 : -Math.ceil(scale / 4);
  while (high >= low && numericGroup(value, first, dot, high) === 0) high--;
  while (low <= high && numericGroup(value, first, dot, low) === 0) low++;
  const n = high >= low ? high - low + 1 : 0;
  at = int32(b, at, 8 + n * 2);
  at = int16(b, at, n);
  at = int16(b, at, n === 0 ? 0 : high);
  at = int16(b, at, negative ? NUMERIC_NEG : 0);
  at = int16(b, at, scale);
  for (let w = high; w >= low; w--) at = int16(b, at, numericGroup(value, first, dot, w));
  return at;
}

/** Binary COPY data of the keys (h, h2, t, r) in the order given (hash order), for the current hot table. */
function encodeKeys(events: readonly ValidEvent[], hashes: Buffer, order: readonly number[], r: number): Buffer {
  const k = Buffer.allocUnsafe(HEADER.length + 2 + events.length * 44);
  let at = HEADER.copy(k, 0);
  for (const i of order) {
    const e = events[i] as ValidEvent;
    at = int16(k, at, 4);
    at = int32(k, at, 8);
    at += hashes.copy(k, at, i * KEY_BYTES, i * KEY_BYTES + 8);
    at = int32(k, at, 8);
    at += hashes.copy(k, at, i * KEY_BYTES + 8, i * KEY_BYTES + 16);
    at = int32(k, at, 4);
    at = int32(k, at, Math.floor(pgMicros(e.ts, e.tsMs) / 1_000_000));
    at = int32(k, at, 4);
    at = int32(k, at, r);
  }
  at = int16(k, at, -1);
  return k.subarray(0, at);
}

/**
 * Binary COPY data for the keys (KEY_COLUMNS, in the order of `order`: ascending hash) and for usage_events
 * (EVENT_COLUMNS), one buffer each.
 */
export function encodeBinaryBatch(
  events: readonly ValidEvent[],
  receivedAt: Date,
  hashes: Buffer,
  order: readonly number[],
): { keys: Buffer; events: Buffer } {
  // Room for the worst case: 3 UTF-8 bytes per UTF-16 unit, every length word and fixed-size value.
  let rowBytes = HEADER.length + 2;
  for (const e of events) {
    const chars = e.customer.length + e.id.length + e.meter.length;
    rowBytes += 2 + 8 * 4 + 4 + 3 * (chars + (e.properties?.length ?? 0)) + 1 + 16 + 8 + 2 * (e.value.length + 2);
  }
  const r = Buffer.allocUnsafe(rowBytes);
  let ra = HEADER.copy(r, 0);
  const received = (receivedAt.getTime() - PG_EPOCH_MS) * 1000;
  for (const e of events) {
    const ts = pgMicros(e.ts, e.tsMs);
    ra = int16(r, ra, 8);
    ra = micros(r, ra, ts);
    ra = text(r, ra, e.customer);
    ra = text(r, ra, e.meter);
    ra = numeric(r, ra, e.value);
    ra = text(r, ra, e.id);
    ra = e.properties === null ? int32(r, ra, -1) : text(r, ra, e.properties, JSONB_VERSION);
    ra = micros(r, ra, received);
    ra = int32(r, ra, 4);
    ra = int32(r, ra, e.dimensionSet ?? 0);
  }
  ra = int16(r, ra, -1);
  const keys = encodeKeys(events, hashes, order, Math.floor((receivedAt.getTime() - PG_EPOCH_MS) / 1000));
  return { keys, events: r.subarray(0, ra) };
}
