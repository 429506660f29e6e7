// The Stripe ledger in the database: targets from ingest's hour marks, pair mappings and their backfill, the work
// queue, and the writes around each send (pending before the request, confirmed or refused after it).
import type { Aggregation } from "../catalog/schemas.js";
import type { Db, Queryable } from "../db/types.js";
import { Dec } from "../pricing/money.js";
import { addBuckets, alignDown } from "../rollups/buckets.js";
import { INVALIDATION_LOCK } from "../rollups/refresh.js";
import { runSeries } from "../rollups/series.js";
import { quantityOf, rangeTotals } from "../rollups/totals.js";
import { carryRevert, type Planned, windowStart } from "./rules.js";
import { kindOf, type LedgerKind, type PendingSend, type WorkRow } from "./types.js";

const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;
/** Up to this many new pairs of one meter are backfilled one by one; more, by reading the meter's usage day by day. */
const PAIRWISE_BACKFILL_MAX = 20;

/** A row still has something to deliver (same predicate as the partial index stripe_ledger_work). */
const HAS_WORK = "(l.pending_identifier IS NOT NULL OR l.target <> l.covered OR l.scale <> l.covered_scale)";
/** The timestamp of the row's next send is inside Stripe's window ($n: the window's start). */
const sendable = (n: number) => `COALESCE(l.pending_timestamp, CASE WHEN l.kind = 'hour'
    THEN l.bucket + INTERVAL '3599 seconds' ELSE l.period + INTERVAL '1 month' - INTERVAL '1 second' END) >= $${n}`;

export async function readSyncState(db: Queryable): Promise<{ installId: string; recentRequests: number[] }> {
  const { rows } = await db.query<{ install_id: string; recent_requests: number[] }>(
    "SELECT install_id, recent_requests FROM stripe_sync_state",
    [],
  );
  if (!rows[0]) throw new Error("stripe_sync_state is empty (migration 0008 not applied?)");
  return { installId: rows[0].install_id, recentRequests: rows[0].recent_requests.map(Number) };
}

export async function saveRecentRequests(db: Queryable, endedAt: number[]): Promise<void> {
  await db.query("UPDATE stripe_sync_state SET recent_requests = $1::float8[]", [endedAt]);
}

interface Target {
  customer: string;
  meter: string;
  bucket: Date;
  period: Date;
  target: string;
}

/** Creates or updates targets of mapped pairs (others are left out); an error is cleared when its target changes. */
async function upsertTargets(q: Queryable, kind: LedgerKind, items: Target[]): Promise<number> {
  if (items.length === 0) return 0;
  const { rowCount } = await q.query(
    `INSERT INTO stripe_ledger (customer_id, meter, kind, bucket, period, target, scale, covered_scale)
     SELECT t.c, t.m, $1, t.b, t.p, t.v, me.stripe_scale, me.stripe_scale
     FROM unnest($2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::numeric[]) AS t(c, m, b, p, v)
     JOIN customers cu ON cu.id = t.c AND cu.stripe_customer_id IS NOT NULL
     JOIN meters me ON me.key = t.m AND me.stripe_event_name IS NOT NULL
     ON CONFLICT (customer_id, meter, kind, bucket) DO UPDATE SET
       target = EXCLUDED.target, error_code = NULL, error_message = NULL, error_at = NULL, updated_at = now()
     WHERE stripe_ledger.target IS DISTINCT FROM EXCLUDED.target`,
    [
      kind,
      items.map((i) => i.customer),
      items.map((i) => i.meter),
      items.map((i) => i.bucket),
      items.map((i) => i.period),
      items.map((i) => i.target),
    ],
  );
  return rowCount;
}

async function mappedMeters(q: Queryable): Promise<Map<string, Aggregation>> {
  const { rows } = await q.query<{ key: string; aggregation: Aggregation }>(
    "SELECT key, aggregation FROM meters WHERE stripe_event_name IS NOT NULL",
    [],
  );
  return new Map(rows.map((r) => [r.key, r.aggregation]));
}

/** Hour targets over [from, to) from the exact hourly series. */
async function hourTargets(
  q: Queryable,
  meters: Map<string, Aggregation>,
  range: { from: Date; to: Date; customer?: string; meter?: string },
  keep: (customer: string, meter: string) => boolean = () => true,
): Promise<Target[]> {
  const rows = await runSeries(q, { granularity: "hour", ...range });
  const out: Target[] = [];
  for (const r of rows) {
    const aggregation = meters.get(r.meter);
    if (!aggregation || kindOf(aggregation) !== "hour" || !keep(r.customer_id, r.meter)) continue;
    out.push({
      customer: r.customer_id,
      meter: r.meter,
      bucket: r.bucket,
      period: alignDown(r.bucket, "month"),
      target: aggregation === "sum" ? r.value_sum : r.event_count,
    });
  }
  return out;
}

/** Running values of a month up to `to` (the last complete hour, or the month's end). */
async function periodTargets(
  q: Queryable,
  meters: Map<string, Aggregation>,
  range: { month: Date; to: Date; customer?: string; meter?: string },
  keep: (customer: string, meter: string) => boolean = () => true,
): Promise<Target[]> {
  const totals = await rangeTotals(q, {
    from: range.month,
    to: range.to,
    customer: range.customer,
    meter: range.meter,
  });
  const out: Target[] = [];
  for (const t of totals) {
    const aggregation = meters.get(t.meter);
    if (!aggregation || kindOf(aggregation) !== "period" || !keep(t.customer, t.meter)) continue;
    out.push({
      customer: t.customer,
      meter: t.meter,
      bucket: range.month,
      period: range.month,
      target: quantityOf(t, aggregation),
    });
  }
  return out;
}

/** Splits sorted hour starts into contiguous ranges of at most a day each. */
function hourRanges(hours: number[]): { from: Date; to: Date }[] {
  const out: { from: Date; to: Date }[] = [];
  let start: number | undefined;
  let prev = 0;
  for (const h of hours) {
    if (start !== undefined && (h !== prev + HOUR_MS || h - start >= DAY_MS)) {
      out.push({ from: new Date(start), to: new Date(prev + HOUR_MS) });
      start = undefined;
    }
    start ??= h;
    prev = h;
  }
  if (start !== undefined) out.push({ from: new Date(start), to: new Date(prev + HOUR_MS) });
  return out;
}

/**
 * Turns the marks of complete hours into targets: the exact value of each marked hour (sum/count meters) and the
 * running value of each marked month (max/last meters), for mapped pairs. Runs holding the invalidation lock
 * exclusively, which every marking ingest transaction holds shared until it commits: an event committed into an
 * hour after its mark was taken marks it again, so no change is missed.
 */
export async function targetsFromMarks(db: Db, now: Date): Promise<{ marked_hours: number; targets_updated: number }> {
  const cut = alignDown(now, "hour");
  return db.transaction(async (tx) => {
    await tx.query("SET LOCAL lock_timeout = '30s'", []);
    await tx.query("SELECT pg_advisory_xact_lock($1::bigint)", [INVALIDATION_LOCK]);
    const { rows } = await tx.query<{ hour: Date }>("DELETE FROM stripe_marks WHERE hour < $1 RETURNING hour", [cut]);
    // The ledger starts at the month of Stripe's window, as backfills do: older hours can never be sent, and their
    // months show the difference in the reconciliation.
    const horizon = trackedFrom(now).getTime();
    const hours = rows
      .map((r) => r.hour.getTime())
      .filter((h) => h >= horizon)
      .sort((a, b) => a - b);
    const meters = await mappedMeters(tx);
    let updated = 0;
    if (hours.length === 0 || meters.size === 0) return { marked_hours: hours.length, targets_updated: 0 };
    const kinds = new Set([...meters.values()].map(kindOf));
    if (kinds.has("hour")) {
      for (const range of hourRanges(hours))
        updated += await upsertTargets(tx, "hour", await hourTargets(tx, meters, range));
    }
    if (kinds.has("period")) {
      const months = [...new Set(hours.map((h) => alignDown(new Date(h), "month").getTime()))].map((t) => new Date(t));
      for (const month of months) {
        const end = addBuckets(month, "month", 1);
        const to = end < cut ? end : cut;
        updated += await upsertTargets(tx, "period", await periodTargets(tx, meters, { month, to }));
      }
    }
    return { marked_hours: hours.length, targets_updated: updated };
  });
}

interface ChangedPair {
  customer_id: string;
  meter: string;
  stripe_customer_id: string;
  event_name: string;
  scale: string;
  aggregation: Aggregation;
  known: boolean;
  old_customer: string | null;
  old_event: string | null;
  old_scale: string | null;
  old_kind: LedgerKind | null;
  backfilled: boolean | null;
}

export interface PairChanges {
  new: number;
  remapped: number;
  rescaled: number;
  backfilled: number;
  targets_backfilled: number;
}

/**
 * Compares every mapped (customer, meter) with the state it was last synced with. A new pair, or one whose
 * destination (Stripe customer, event name) or kind changed, gets its targets from the start of the month of
 * Stripe's 35-day window (older hours of that month become stale rows: reported, never sent); a changed destination
 * first resets what was sent inside the window, since the new destination has none of it. A changed scale re-sends
 * the window's rows at the new scale (the difference to what was sent).
 */
export async function syncPairs(db: Db, now: Date): Promise<PairChanges> {
  const changes: PairChanges = { new: 0, remapped: 0, rescaled: 0, backfilled: 0, targets_backfilled: 0 };
  const { rows } = await db.query<ChangedPair>(
    `SELECT cu.id AS customer_id, me.key AS meter, cu.stripe_customer_id, me.stripe_event_name AS event_name,
            me.stripe_scale::text AS scale, me.aggregation,
            p.customer_id IS NOT NULL AS known, p.stripe_customer_id AS old_customer, p.event_name AS old_event,
            p.scale::text AS old_scale, p.kind AS old_kind, p.backfilled
     FROM customers cu CROSS JOIN meters me
     LEFT JOIN stripe_pairs p ON p.customer_id = cu.id AND p.meter = me.key
     WHERE cu.stripe_customer_id IS NOT NULL AND me.stripe_event_name IS NOT NULL
       AND (p.customer_id IS NULL OR NOT p.backfilled OR p.stripe_customer_id <> cu.stripe_customer_id
            OR p.event_name <> me.stripe_event_name OR p.scale <> me.stripe_scale
            OR p.kind <> CASE WHEN me.aggregation IN ('sum', 'count') THEN 'hour' ELSE 'period' END)`,
    [],
  );
  // A pair that lost its mapping misses the marks consumed meanwhile: when it is mapped again, it is backfilled.
  await db.query(
    `UPDATE stripe_pairs p SET backfilled = false, updated_at = now()
     WHERE p.backfilled AND NOT EXISTS (
       SELECT 1 FROM customers cu, meters me
       WHERE cu.id = p.customer_id AND me.key = p.meter
         AND cu.stripe_customer_id IS NOT NULL AND me.stripe_event_name IS NOT NULL)`,
    [],
  );
  if (rows.length === 0) return changes;
  const ws = windowStart(now);
  const remap: ChangedPair[] = [];
  const rescale: ChangedPair[] = [];
  const fill: ChangedPair[] = [];
  for (const r of rows) {
    const moved =
      r.known &&
      (r.old_customer !== r.stripe_customer_id || r.old_event !== r.event_name || r.old_kind !== kindOf(r.aggregation));
    if (!r.known) {
      changes.new += 1;
      fill.push(r);
    } else if (moved) {
      changes.remapped += 1;
      remap.push(r);
      fill.push(r);
    } else {
      if (r.old_scale !== null && r.old_scale !== r.scale) {
        changes.rescaled += 1;
        rescale.push(r);
      }
      if (!r.backfilled) fill.push(r);
    }
  }
  const columns = (list: ChangedPair[]) => [list.map((r) => r.customer_id), list.map((r) => r.meter)];
  const inWindow = `(CASE WHEN l.kind = 'hour' THEN l.bucket + INTERVAL '3599 seconds'
                     ELSE l.period + INTERVAL '1 month' - INTERVAL '1 second' END) >= $4`;
  await db.transaction(async (tx) => {
    if (remap.length > 0) {
      await tx.query(
        `UPDATE stripe_ledger l SET sent_units = 0, covered = 0, covered_scale = t.s, scale = t.s,
           pending_identifier = NULL, pending_units = NULL, pending_target = NULL, pending_scale = NULL,
           pending_timestamp = NULL, pending_since = NULL, attempts = 0, last_attempt_error = NULL,
           last_sent_timestamp = NULL, error_code = NULL, error_message = NULL, error_at = NULL, updated_at = now()
         FROM unnest($1::text[], $2::text[], $3::numeric[]) AS t(c, m, s)
         WHERE l.customer_id = t.c AND l.meter = t.m AND ${inWindow}`,
        [...columns(remap), remap.map((r) => r.scale), ws],
      );
      await tx.query(
        `DELETE FROM stripe_carry c USING unnest($1::text[], $2::text[]) AS t(c, m)
         WHERE c.customer_id = t.c AND c.meter = t.m AND c.period + INTERVAL '1 month' - INTERVAL '1 second' >= $3`,
        [...columns(remap), ws],
      );
    }
    if (rescale.length > 0) {
      await tx.query(
        `UPDATE stripe_ledger l SET scale = t.s, updated_at = now()
         FROM unnest($1::text[], $2::text[], $3::numeric[]) AS t(c, m, s)
         WHERE l.customer_id = t.c AND l.meter = t.m AND ${inWindow}`,
        [...columns(rescale), rescale.map((r) => r.scale), ws],
      );
    }
    const needsFill = new Set(fill.map((r) => `${r.customer_id}\u0000${r.meter}`));
    await tx.query(
      `INSERT INTO stripe_pairs (customer_id, meter, stripe_customer_id, event_name, scale, kind, backfilled, mapped_at)
       SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::numeric[], $6::text[], $7::boolean[],
                            $8::timestamptz[])
       ON CONFLICT (customer_id, meter) DO UPDATE SET
         mapped_at = CASE WHEN stripe_pairs.stripe_customer_id = EXCLUDED.stripe_customer_id
                            AND stripe_pairs.event_name = EXCLUDED.event_name
                          THEN stripe_pairs.mapped_at ELSE EXCLUDED.mapped_at END,
         stripe_customer_id = EXCLUDED.stripe_customer_id, event_name = EXCLUDED.event_name, scale = EXCLUDED.scale,
         kind = EXCLUDED.kind, backfilled = EXCLUDED.backfilled, updated_at = now()`,
      [
        ...columns(rows),
        rows.map((r) => r.stripe_customer_id),
        rows.map((r) => r.event_name),
        rows.map((r) => r.scale),
        rows.map((r) => kindOf(r.aggregation)),
        rows.map((r) => !needsFill.has(`${r.customer_id}\u0000${r.meter}`)),
        rows.map(() => now),
      ],
    );
  });
  if (fill.length > 0) {
    changes.targets_backfilled = await backfill(db, fill, now);
    await db.query(
      `UPDATE stripe_pairs p SET backfilled = true, updated_at = now()
       FROM unnest($1::text[], $2::text[]) AS t(c, m) WHERE p.customer_id = t.c AND p.meter = t.m`,
      columns(fill),
    );
    changes.backfilled = fill.length;
  }
  return changes;
}

/** The first hour the ledger tracks: the start of the month in which Stripe's 35-day window begins. */
export const trackedFrom = (now: Date): Date => alignDown(windowStart(now), "month");

async function backfill(db: Db, pairs: ChangedPair[], now: Date): Promise<number> {
  const cut = alignDown(now, "hour");
  const from = trackedFrom(now);
  const meters = await mappedMeters(db);
  const byMeter = new Map<string, ChangedPair[]>();
  for (const p of pairs) {
    const list = byMeter.get(p.meter);
    if (list) list.push(p);
    else byMeter.set(p.meter, [p]);
  }
  let written = 0;
  for (const [meter, group] of byMeter) {
    const aggregation = meters.get(meter);
    if (!aggregation) continue;
    const customers = new Set(group.map((p) => p.customer_id));
    const keep = (c: string) => customers.has(c);
    const pairwise = group.length <= PAIRWISE_BACKFILL_MAX;
    if (kindOf(aggregation) === "hour") {
      if (pairwise) {
        for (const p of group) {
          const items = await hourTargets(db, meters, { from, to: cut, customer: p.customer_id, meter });
          written += await upsertTargets(db, "hour", items);
        }
      } else {
        // Many pairs at once (Stripe sync just switched on): the meter's days with usage of these customers first,
        // then their hours one day at a time, so memory stays bounded by a day of the meter's usage.
        const days = await runSeries(db, {
          granularity: "day",
          from,
          to: addBuckets(alignDown(cut, "day"), "day", 1),
          meter,
        });
        const used = [...new Set(days.filter((d) => keep(d.customer_id)).map((d) => d.bucket.getTime()))].sort();
        for (const start of used) {
          const to = new Date(Math.min(start + DAY_MS, cut.getTime()));
          written += await upsertTargets(
            db,
            "hour",
            await hourTargets(db, meters, { from: new Date(start), to, meter }, keep),
          );
        }
      }
      continue;
    }
    for (let month = from; month < cut; month = addBuckets(month, "month", 1)) {
      const end = addBuckets(month, "month", 1);
      const to = end < cut ? end : cut;
      const items = pairwise
        ? (
            await Promise.all(
              group.map((p) => periodTargets(db, meters, { month, to, customer: p.customer_id, meter })),
            )
          ).flat()
        : await periodTargets(db, meters, { month, to, meter }, keep);
      written += await upsertTargets(db, "period", items);
    }
  }
  return written;
}

interface WorkDbRow {
  customer_id: string;
  meter: string;
  kind: LedgerKind;
  bucket: Date;
  period: Date;
  target: string;
  scale: string;
  covered: string;
  covered_scale: string;
  sent_units: string;
  seq: number;
  pending_identifier: string | null;
  pending_units: string | null;
  pending_target: string | null;
  pending_scale: string | null;
  pending_timestamp: Date | null;
  last_sent_timestamp: Date | null;
  stripe_customer_id: string | null;
  event_name: string | null;
  mapped: boolean;
}

/**
 * Rows with something to deliver and not waiting on an error, with their pair's current destination. `mapped` is
 * false when the customer or meter lost its Stripe mapping (the row waits), or the row is of a kind the meter no
 * longer has (retired by a change of aggregation: never sent).
 */
export async function loadWork(
  db: Queryable,
  which: "all" | "pending" = "all",
): Promise<{ rows: WorkRow[]; unmapped: number }> {
  const { rows } = await db.query<WorkDbRow>(
    `SELECT l.customer_id, l.meter, l.kind, l.bucket, l.period, l.target::text, l.scale::text, l.covered::text,
            l.covered_scale::text, l.sent_units::text, l.seq, l.pending_identifier, l.pending_units::text,
            l.pending_target::text, l.pending_scale::text, l.pending_timestamp, l.last_sent_timestamp,
            cu.stripe_customer_id, me.stripe_event_name AS event_name,
            COALESCE(p.kind = l.kind AND p.stripe_customer_id = cu.stripe_customer_id
                     AND p.event_name = me.stripe_event_name, false) AS mapped
     FROM stripe_ledger l
     LEFT JOIN customers cu ON cu.id = l.customer_id
     LEFT JOIN meters me ON me.key = l.meter
     LEFT JOIN stripe_pairs p ON p.customer_id = l.customer_id AND p.meter = l.meter
     WHERE ${which === "pending" ? "l.pending_identifier IS NOT NULL" : HAS_WORK}
       AND l.error_message IS NULL AND (p.kind IS NULL OR p.kind = l.kind)
     ORDER BY l.customer_id, l.meter, l.bucket`,
    [],
  );
  let unmapped = 0;
  const out: WorkRow[] = [];
  for (const r of rows) {
    if (!r.mapped || !r.stripe_customer_id || !r.event_name) {
      unmapped += 1;
      continue;
    }
    out.push({
      customer: r.customer_id,
      meter: r.meter,
      kind: r.kind,
      bucket: r.bucket,
      period: r.period,
      target: r.target,
      scale: r.scale,
      covered: r.covered,
      coveredScale: r.covered_scale,
      sentUnits: r.sent_units,
      seq: r.seq,
      pending:
        r.pending_identifier && r.pending_units && r.pending_target && r.pending_scale && r.pending_timestamp
          ? {
              identifier: r.pending_identifier,
              units: r.pending_units,
              target: r.pending_target,
              scale: r.pending_scale,
              timestamp: r.pending_timestamp,
            }
          : null,
      lastSentTimestamp: r.last_sent_timestamp,
      stripeCustomerId: r.stripe_customer_id,
      eventName: r.event_name,
    });
  }
  return { rows: out, unmapped };
}

export async function loadCarries(db: Queryable, rows: WorkRow[]): Promise<Map<string, Map<string, Dec>>> {
  const hourRows = rows.filter((r) => r.kind === "hour");
  const out = new Map<string, Map<string, Dec>>();
  if (hourRows.length === 0) return out;
  const { rows: carries } = await db.query<{ customer_id: string; meter: string; period: Date; carry: string }>(
    `SELECT c.customer_id, c.meter, c.period, c.carry::text FROM stripe_carry c
     JOIN (SELECT DISTINCT u.c, u.m, u.p FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS u(c, m, p)) AS t
       ON c.customer_id = t.c AND c.meter = t.m AND c.period = t.p`,
    [hourRows.map((r) => r.customer), hourRows.map((r) => r.meter), hourRows.map((r) => r.period)],
  );
  for (const c of carries) {
    const key = pairKey(c.customer_id, c.meter);
    let months = out.get(key);
    if (!months) {
      months = new Map();
      out.set(key, months);
    }
    months.set(c.period.toISOString(), new Dec(c.carry));
  }
  return out;
}

export const pairKey = (customer: string, meter: string) => `${customer}\u0000${meter}`;

/**
 * Writes planned sends as pending (before any request), moves skipped rows' coverage on, records values too large
 * for Stripe as errors, and stores the carries, in one transaction. Returns the identifiers written: only those
 * may be sent, since a send the ledger does not hold could never be confirmed.
 */
export async function writePlans(
  db: Db,
  planned: Planned[],
  carries: { customer: string; meter: string; period: Date; carry: string }[],
  now: Date,
): Promise<Set<string>> {
  const sends = planned.filter((p): p is Extract<Planned, { kind: "send" }> => p.kind === "send");
  const skips = planned.filter((p) => p.kind === "skip");
  const large = planned.filter((p): p is Extract<Planned, { kind: "too_large" }> => p.kind === "too_large");
  const keys = (list: { row: WorkRow }[]) => [
    list.map((p) => p.row.customer),
    list.map((p) => p.row.meter),
    list.map((p) => p.row.kind),
    list.map((p) => p.row.bucket),
  ];
  const match =
    "l.customer_id = t.c AND l.meter = t.m AND l.kind = t.k AND l.bucket = t.b AND l.pending_identifier IS NULL";
  return db.transaction(async (tx) => {
    const written = new Set<string>();
    if (sends.length > 0) {
      const { rows } = await tx.query<{ id: string }>(
        `UPDATE stripe_ledger l SET seq = l.seq + 1, pending_identifier = t.id, pending_units = t.u,
           pending_target = t.v, pending_scale = t.s, pending_timestamp = t.ts, pending_since = $11, attempts = 0,
           last_attempt_error = NULL, updated_at = now()
         FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::numeric[],
                     $7::numeric[], $8::numeric[], $9::timestamptz[], $10::int[]) AS t(c, m, k, b, id, u, v, s, ts, seq)
         WHERE ${match} AND l.seq + 1 = t.seq
         RETURNING l.pending_identifier AS id`,
        [
          ...keys(sends),
          sends.map((p) => p.pending.identifier),
          sends.map((p) => p.pending.units),
          sends.map((p) => p.pending.target),
          sends.map((p) => p.pending.scale),
          sends.map((p) => p.pending.timestamp),
          sends.map((p) => p.row.seq + 1),
          now,
        ],
      );
      for (const r of rows) written.add(r.id);
    }
    if (skips.length > 0) {
      await tx.query(
        `UPDATE stripe_ledger l SET covered = t.v, covered_scale = t.s, updated_at = now()
         FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::numeric[], $6::numeric[])
           AS t(c, m, k, b, v, s)
         WHERE ${match}`,
        [...keys(skips), skips.map((p) => p.row.target), skips.map((p) => p.row.scale)],
      );
    }
    if (large.length > 0) {
      await tx.query(
        `UPDATE stripe_ledger l SET error_code = 'value_too_large', error_at = $6, updated_at = now(),
           error_message = 'the value to send (' || t.u || ' units) has more than the 15 significant digits Stripe accepts; lower stripe_scale'
         FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[]) AS t(c, m, k, b, u)
         WHERE ${match}`,
        [...keys(large), large.map((p) => p.units), now],
      );
    }
    if (carries.length > 0) {
      await tx.query(
        `INSERT INTO stripe_carry (customer_id, meter, period, carry)
         SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::numeric[])
         ON CONFLICT (customer_id, meter, period) DO UPDATE SET carry = EXCLUDED.carry`,
        [
          carries.map((c) => c.customer),
          carries.map((c) => c.meter),
          carries.map((c) => c.period),
          carries.map((c) => c.carry),
        ],
      );
    }
    return written;
  });
}

/** Stripe has these sends (accepted now, or earlier: "already exists"): their units count as sent. */
export async function confirmSends(db: Queryable, identifiers: string[], at: Date): Promise<number> {
  if (identifiers.length === 0) return 0;
  const { rowCount } = await db.query(
    `UPDATE stripe_ledger l SET
       sent_units = CASE WHEN l.kind = 'hour' THEN l.sent_units + l.pending_units ELSE l.pending_units END,
       covered = l.pending_target, covered_scale = l.pending_scale, last_sent_timestamp = l.pending_timestamp,
       delivered_at = $2, sends_delivered = l.sends_delivered + 1,
       pending_identifier = NULL, pending_units = NULL, pending_target = NULL, pending_scale = NULL,
       pending_timestamp = NULL, pending_since = NULL, attempts = 0, last_attempt_error = NULL, updated_at = now()
     WHERE l.pending_identifier = ANY($1::text[])`,
    [identifiers, at],
  );
  return rowCount;
}

/** A send Stripe did not take and may still arrive on a retry: counted and described, kept pending. */
export async function noteAttempt(db: Queryable, identifiers: string[], message: string): Promise<void> {
  if (identifiers.length === 0) return;
  await db.query(
    `UPDATE stripe_ledger SET attempts = attempts + 1, last_attempt_error = $2, updated_at = now()
     WHERE pending_identifier = ANY($1::text[])`,
    [identifiers, message.slice(0, 1000)],
  );
}

/**
 * Stripe refused these sends (a 4xx other than 429): Stripe's message goes on the row, the send is dropped and its
 * rounding undone, and the row waits until its target changes or an operator resets it.
 */
export async function refuseSends(
  db: Db,
  sends: PendingSend[],
  error: { code: string; message: string },
  at: Date,
): Promise<void> {
  if (sends.length === 0) return;
  await db.transaction(async (tx) => {
    await tx.query(
      `UPDATE stripe_ledger SET error_code = $2, error_message = $3, error_at = $4,
         pending_identifier = NULL, pending_units = NULL, pending_target = NULL, pending_scale = NULL,
         pending_timestamp = NULL, pending_since = NULL, attempts = 0, last_attempt_error = NULL, updated_at = now()
       WHERE pending_identifier = ANY($1::text[])`,
      [sends.map((s) => s.pending.identifier), error.code.slice(0, 200), error.message.slice(0, 2000), at],
    );
    // One change per (customer, meter, month): a v2 batch may hold several hours of one month.
    const reverts = new Map<string, { customer: string; meter: string; period: Date; delta: Dec }>();
    for (const s of sends) {
      if (s.row.kind !== "hour") continue;
      const key = `${pairKey(s.row.customer, s.row.meter)}\u0000${s.row.period.toISOString()}`;
      const entry = reverts.get(key) ?? {
        customer: s.row.customer,
        meter: s.row.meter,
        period: s.row.period,
        delta: new Dec(0),
      };
      entry.delta = entry.delta.plus(carryRevert(s.row, s.pending));
      reverts.set(key, entry);
    }
    if (reverts.size > 0) {
      const list = [...reverts.values()];
      await tx.query(
        `INSERT INTO stripe_carry (customer_id, meter, period, carry)
         SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::numeric[])
         ON CONFLICT (customer_id, meter, period) DO UPDATE SET carry = stripe_carry.carry + EXCLUDED.carry`,
        [
          list.map((r) => r.customer),
          list.map((r) => r.meter),
          list.map((r) => r.period),
          list.map((r) => r.delta.toFixed()),
        ],
      );
    }
  });
}

/** Clears errors (all, or one customer's and/or meter's) so the next run tries those rows again. */
export async function resetErrors(db: Queryable, filter: { customer?: string; meter?: string }): Promise<number> {
  const { rowCount } = await db.query(
    `UPDATE stripe_ledger SET error_code = NULL, error_message = NULL, error_at = NULL, updated_at = now()
     WHERE error_message IS NOT NULL AND ($1::text IS NULL OR customer_id = $1) AND ($2::text IS NULL OR meter = $2)`,
    [filter.customer ?? null, filter.meter ?? null],
  );
  return rowCount;
}

export interface LedgerState {
  pending: number;
  errors: number;
  stale: number;
  stale_buckets: { customer: string; meter: string; bucket: string }[];
}

/**
 * Where the ledger stands for mapped pairs: rows still to deliver, in error, and too old for Stripe — in the months
 * the ledger still tracks (older months keep their status in the reconciliation).
 */
export async function ledgerState(db: Queryable, now: Date): Promise<LedgerState> {
  const { rows } = await db.query<{ pending: string; errors: string; stale: string; sample: string | null }>(
    `WITH work AS (
       SELECT l.*, ${sendable(1)} AS sendable
       FROM stripe_ledger l
       JOIN stripe_pairs p ON p.customer_id = l.customer_id AND p.meter = l.meter AND p.kind = l.kind
       WHERE ${HAS_WORK} AND l.period >= $2
     )
     SELECT count(*) FILTER (WHERE error_message IS NULL AND sendable)::text AS pending,
            count(*) FILTER (WHERE error_message IS NOT NULL)::text AS errors,
            count(*) FILTER (WHERE error_message IS NULL AND NOT sendable)::text AS stale,
            (SELECT json_agg(s)::text FROM (
               SELECT customer_id AS customer, meter, bucket FROM work
               WHERE error_message IS NULL AND NOT sendable ORDER BY bucket DESC LIMIT 10) AS s) AS sample
     FROM work`,
    [windowStart(now), trackedFrom(now)],
  );
  const r = rows[0];
  const sample = r?.sample ? (JSON.parse(r.sample) as { customer: string; meter: string; bucket: string }[]) : [];
  return {
    pending: Number(r?.pending ?? 0),
    errors: Number(r?.errors ?? 0),
    stale: Number(r?.stale ?? 0),
    stale_buckets: sample.map((s) => ({ ...s, bucket: new Date(s.bucket).toISOString() })),
  };
}

export { HAS_WORK, sendable };
