// The dedupe key store (sql/0050_event_key_store.sql, docs/ingest.md#the-key-store). A key is the first 16 bytes
// of SHA-256(customer UTF-8, NUL, id UTF-8) as two signed 64-bit integers, h (indexed) and h2, with the second of
// the event's timestamp (t) and of its arrival (r). New keys go to the current hot table, whose primary key on h
// arbitrates between concurrent writers; the sealed hot table and the packed cold table are read-only for ingest
// and are probed. Two keys with the same h but another h2 are told apart: the second is kept, exactly by
// (customer, id), in event_key_collisions.
// Every transaction that writes keys first takes the store's shared advisory lock (event_key_lock), which a
// rotation or a flip of the tables takes exclusively: the tables a transaction reads cannot change under it.
import { hash } from "node:crypto";
import { lockId, type Queryable } from "../db/types.js";
import type { ValidEvent } from "./validate.js";

export const KEY_LOCK = lockId("event-keys");
/** PostgreSQL's epoch, 2000-01-01 UTC, in ms: t and r count seconds from it. */
const PG_EPOCH_MS = 946_684_800_000;
export const DEFAULT_WINDOW_MS = 35 * 86_400_000;

export const secondOf = (ms: number): number => Math.floor((ms - PG_EPOCH_MS) / 1000);

/** The tables a transaction works with, as event_key_lock gave them. */
export interface KeyTables {
  hot: string;
  /** The other hot table while it holds keys the cold table lacks (between a rotation and the flip); else null. */
  sealed: string | null;
  cold: string;
  /** The cold table's bucket of key h is h >> shift. */
  shift: number;
}

/** Takes the key store's shared lock for the transaction and reads which tables are current. */
export async function lockKeys(tx: Queryable): Promise<KeyTables> {
  const { rows } = await tx.query<{ hot: number; cold: number; shift: number; sealed: boolean }>(
    "SELECT hot, cold, shift, sealed FROM event_key_lock($1)",
    [KEY_LOCK],
  );
  const s = rows[0];
  if (!s) throw new Error("event_key_state has no row");
  return {
    hot: `event_keys_hot_${s.hot}`,
    sealed: s.sealed ? `event_keys_hot_${1 - s.hot}` : null,
    cold: `event_keys_cold_${s.cold}`,
    shift: Number(s.shift),
  };
}

/** Bytes per key in keyHashes: h, then h2. */
export const KEY_BYTES = 16;

/** The keys of events, 16 bytes each: h and h2, big-endian (as PostgreSQL's event_key_hash/_hash2 read them). */
export function keyHashes(events: readonly ValidEvent[]): Buffer {
  const out = Buffer.allocUnsafe(events.length * KEY_BYTES);
  for (let i = 0; i < events.length; i++) {
    const e = events[i] as ValidEvent;
    hash("sha256", `${e.customer}\u0000${e.id}`, "buffer").copy(out, i * KEY_BYTES, 0, KEY_BYTES);
  }
  return out;
}

/** Event indexes in ascending (signed 64-bit) h order: every writer takes hot keys in this one order. */
export function hashOrder(hashes: Buffer): number[] {
  const n = hashes.length / KEY_BYTES;
  const hi = new Int32Array(n);
  const lo = new Uint32Array(n);
  const order = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    hi[i] = hashes.readInt32BE(i * KEY_BYTES);
    lo[i] = hashes.readUInt32BE(i * KEY_BYTES + 4);
    order[i] = i;
  }
  order.sort((a, b) => (hi[a] as number) - (hi[b] as number) || (lo[a] as number) - (lo[b] as number));
  return order;
}

/** Decimal text of each key's h (part 0) or h2 (part 1), for a bigint[] parameter or text COPY. */
export function hashTexts(hashes: Buffer, part: 0 | 1 = 0): string[] {
  const out = new Array<string>(hashes.length / KEY_BYTES);
  for (let i = 0; i < out.length; i++) out[i] = hashes.readBigInt64BE(i * KEY_BYTES + part * 8).toString();
  return out;
}

// Every EXISTS below ends in OFFSET 0: without it the planner may turn a correlated EXISTS into a hashed subplan
// that reads the whole table once per statement, which it picks for a table it believes small — a hot table just
// emptied by a rotation, before autovacuum has analyzed it (measured: 3× the PostgreSQL CPU per event). With it,
// every key is one index lookup per table, whatever the statistics say.

/**
 * A cold row holds key $k among its packed keys, received at or after $cut. position() is the fast filter (2.0 µs
 * a key against 3.2 for = ANY on an array, at 10 M keys); only on a hit are the 8-byte slots compared one by one,
 * aligned (a match across two keys' bytes is no hit), with their arrival.
 */
const inCold = (t: KeyTables, k: string, cut: string) => `EXISTS (
    SELECT 1 FROM ${t.cold} c
    WHERE c.bucket = (${k} >> ${t.shift})::integer AND position(int8send(${k}) IN c.hb) > 0
      AND EXISTS (
        SELECT 1 FROM generate_subscripts(c.rs, 1) AS i
        WHERE substr(c.hb, i * 8 - 7, 8) = int8send(${k}) AND c.rs[i] >= ${cut})
    OFFSET 0)`;

/**
 * SQL true when key `k` (an expression) is held, received at or after `cut`, by a table other than the current
 * hot one: the sealed hot table, the cold table or the collisions.
 */
export const heldElsewhere = (t: KeyTables, k: string, cut: string) => `(
    ${t.sealed ? `EXISTS (SELECT 1 FROM ${t.sealed} s WHERE s.h = ${k} AND s.r >= ${cut} OFFSET 0) OR` : ""}
    ${inCold(t, k, cut)}
    OR EXISTS (SELECT 1 FROM event_key_collisions x WHERE x.h = ${k} AND x.r >= ${cut} OFFSET 0))`;

/** How many of the keys' h are held already (any table, the current hot one included). */
export async function storedCount(tx: Queryable, t: KeyTables, hashes: Buffer, cut: number): Promise<number> {
  const { rows } = await tx.query<{ n: number }>(
    `SELECT count(*)::integer AS n FROM unnest($1::bigint[]) AS k(h)
     WHERE EXISTS (SELECT 1 FROM ${t.hot} o WHERE o.h = k.h AND o.r >= $2 OFFSET 0) OR ${heldElsewhere(t, "k.h", "$2")}`,
    [hashTexts(hashes), cut],
  );
  return rows[0]?.n ?? 0;
}

/**
 * SQL true when the key (h `k`, h2 `k2`, customer `c`, id `id`) is stored, received at or after `cut`: the same
 * 128 bits in any table, or the same customer and id among the collisions.
 */
export const storedExactly = (k: string, k2: string, c: string, id: string, cut: string) => `(
    EXISTS (SELECT 1 FROM event_key_matches(${k}, ${cut}) AS m WHERE m.h2 = ${k2} OFFSET 0)
    OR EXISTS (
      SELECT 1 FROM event_key_collisions x
      WHERE x.customer_id = ${c} AND x.event_id = ${id} AND x.r >= ${cut} OFFSET 0))`;
