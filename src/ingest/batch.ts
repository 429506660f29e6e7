// A batch on its way to the database: its events in (customer, id) byte order with duplicates dropped (the first
// of each key wins), and the hours they touch. Pure: no I/O here. (The COPY encoding is in copyBinary.ts.)
import type { ValidEvent } from "./validate.js";

/** Any UTF-16 unit at or above the surrogates: there UTF-16 order and code point (byte) order part ways. */
const BEYOND_BMP_ORDER = /[\ud800-\uffff]/;

/**
 * Compares strings by code point, which is the byte order of their UTF-8 form (PostgreSQL's COLLATE "C").
 * JavaScript's `<` compares UTF-16 units, which puts U+10000 and above before U+E000–U+FFFF.
 */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 && y >= 0xd800) {
      // Surrogates (U+10000 and above) after U+E000–U+FFFF, as in code point order.
      x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
      y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
    }
    return x - y;
  }
  return a.length - b.length;
}

/**
 * The events of a batch in (customer, id) byte order, each key once (the first occurrence in the batch wins).
 * Customers are registered in this order; the keys themselves are claimed in hash order (keys.ts hashOrder) by
 * both paths, optimistic COPY and ON CONFLICT, so two batches with overlapping keys wait for each other instead
 * of deadlocking.
 */
export function distinctInKeyOrder(events: readonly ValidEvent[]): ValidEvent[] {
  const n = events.length;
  // Neither a customer nor an id holds NUL, so customer + NUL + id orders exactly as the pair (customer, id).
  const keys = new Array<string>(n);
  const order = new Array<number>(n);
  let beyondBmp = false;
  for (let i = 0; i < n; i++) {
    const e = events[i] as ValidEvent;
    const key = `${e.customer}\u0000${e.id}`;
    keys[i] = key;
    order[i] = i;
    if (!beyondBmp && BEYOND_BMP_ORDER.test(key)) beyondBmp = true;
  }
  order.sort(
    beyondBmp
      ? (a, b) => compareCodePoints(keys[a] as string, keys[b] as string) || a - b
      : (a, b) => {
          const x = keys[a] as string;
          const y = keys[b] as string;
          return x < y ? -1 : x > y ? 1 : a - b;
        },
  );
  const out: ValidEvent[] = [];
  let last: string | undefined;
  for (const i of order) {
    const key = keys[i];
    if (key === last) continue;
    last = key;
    out.push(events[i] as ValidEvent);
  }
  return out;
}

/** The distinct customers of events in key order, themselves in byte order. */
export function customersInOrder(events: readonly ValidEvent[]): string[] {
  const out: string[] = [];
  let last: string | undefined;
  for (const e of events) {
    if (e.customer === last) continue;
    last = e.customer;
    out.push(e.customer);
  }
  return out;
}

/** A key in the hot table: its hash (two halves), the second of its timestamp and of its arrival (ingest/keys.ts). */
export const KEY_COLUMNS = ["h", "h2", "t", "r"] as const;
export const EVENT_COLUMNS = [
  "ts",
  "customer_id",
  "meter",
  "value",
  "event_id",
  "properties",
  "received_at",
  "dimension_set",
] as const;

/** The hours (start, in ms) that events fall into, ascending: marks are taken in this one order. */
export function hoursOf(events: Iterable<ValidEvent>, into = new Set<number>()): Set<number> {
  for (const e of events) into.add(hourOf(e.tsMs));
  return into;
}

export const hourOf = (ms: number) => Math.floor(ms / 3_600_000) * 3_600_000;

export const ascending = (hours: Set<number>): number[] => [...hours].sort((a, b) => a - b);
