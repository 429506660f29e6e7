// The refresh job: claims the hours marked since the last run, refreshes hourly → daily → monthly (bottom-up,
// serialized by the job lock), then releases the claims. TimescaleDB refreshes its continuous aggregates;
// the portable engine recomputes only the touched buckets of its *_mat tables, in one transaction.

import { claimRollupHours, releaseRollupClaims } from "../changes/hours.js";
import type { Engine } from "../db/open.js";
import type { Db } from "../db/types.js";
import { addBuckets, alignDown } from "./buckets.js";
import { aggregateEvents, aggregateRollups, LEVEL, LEVELS, type Level, ROLLUP_COLUMNS, ROLLUP_KEYS } from "./levels.js";
import { readWatermarks } from "./series.js";

interface RefreshOptions {
  /**
   * Refresh everything from the beginning (after a bulk load that bypassed ingest), the distinct values of
   * unique_count meters too (which ingest writes, and the refresh job otherwise leaves alone).
   */
  full?: boolean;
  /**
   * Embedded engine, scheduled runs: hours still taking events are left to a later run (RefreshPacer), and the
   * hourly level is refreshed one claimed hour at a time, so that ingest on the one connection never waits behind
   * one long recompute.
   */
  pacer?: RefreshPacer | undefined;
}

/** How long a refresh may leave an hour that keeps taking events dirty (read from raw events, exact meanwhile). */
const MAX_DEFER_MS = 5 * 60_000;

/**
 * Remembers since when each hour has been left dirty. An hour marked again since the previous run is still being
 * written: it waits for a run that finds it quiet, or until it has waited MAX_DEFER_MS. Reads stay exact either
 * way (a claimed hour is read from raw events); only their speed depends on the rollups.
 */
export class RefreshPacer {
  readonly #since = new Map<number, number>();

  /** Of the claimed hours, those to leave for a later run. */
  defer(claimed: readonly number[], fresh: ReadonlySet<number>, nowMs: number): Set<number> {
    const out = new Set<number>();
    for (const h of claimed) {
      const since = this.#since.get(h) ?? nowMs;
      if (fresh.has(h) && nowMs - since < MAX_DEFER_MS) {
        this.#since.set(h, since);
        out.add(h);
      } else this.#since.delete(h);
    }
    for (const h of this.#since.keys()) if (!out.has(h)) this.#since.delete(h);
    return out;
  }
}

interface RefreshSummary {
  engine: Engine;
  claimed_hours: number;
  /** Hours left dirty for a later run (RefreshPacer). */
  deferred_hours?: number;
  oldest_claimed_hour: string | null;
  refreshed: Record<"hour" | "day" | "month", { from: string | null; to: string } | null>;
}

export async function refreshRollups(
  db: Db,
  engine: Engine,
  now: Date,
  opts: RefreshOptions = {},
): Promise<RefreshSummary> {
  const { claims, fresh } = await claimRollupHours(db);
  const all = [...new Set(claims.map((c) => c.hour.getTime()))];
  const paced = opts.pacer && engine === "timescale" && db.backend === "embedded" && !opts.full;
  const deferred = paced ? (opts.pacer as RefreshPacer).defer(all, fresh, now.getTime()) : new Set<number>();
  const hours = all.filter((h) => !deferred.has(h)).map((h) => new Date(h));
  const oldest = hours.reduce<Date | null>((min, h) => (!min || h < min ? h : min), null);
  const refreshed =
    engine === "timescale"
      ? await refreshTimescale(db, now, oldest, { ...opts, slices: paced ? { hours, deferred } : undefined })
      : await refreshPortable(db, now, hours, opts);
  if (opts.full) await db.query(REBUILD_DISTINCT, []);
  await releaseRollupClaims(
    db,
    claims.filter((c) => !deferred.has(c.hour.getTime())).map((c) => c.id),
  );
  return {
    engine,
    claimed_hours: hours.length,
    ...(deferred.size > 0 ? { deferred_hours: deferred.size } : {}),
    oldest_claimed_hour: oldest?.toISOString() ?? null,
    refreshed,
  };
}

/**
 * usage_distinct from raw events: every value of a unique_count meter's property per (customer, meter, UTC day,
 * dimension set) with its first instant that day. Idempotent: rows ingest wrote stay, first instants only go earlier.
 */
const REBUILD_DISTINCT = `
  INSERT INTO usage_distinct (customer_id, meter, day, dimension_set, value, first_ts)
  SELECT e.customer_id, e.meter, date_trunc('day', e.ts, 'UTC'), e.dimension_set, e.properties ->> m.unique_property,
         min(e.ts)
  FROM usage_events e JOIN meters m ON m.key = e.meter AND m.aggregation = 'unique_count'
  WHERE e.properties ? m.unique_property
  GROUP BY 1, 2, 3, 4, 5
  ON CONFLICT (customer_id, meter, day, dimension_set, value)
    DO UPDATE SET first_ts = EXCLUDED.first_ts WHERE EXCLUDED.first_ts < usage_distinct.first_ts`;

const iso = (d: Date | null) => (d ? d.toISOString() : null);

/** The hourly level's window cut into pieces of at most one claimed hour each, deferred hours left out. */
interface Slices {
  hours: Date[];
  deferred: ReadonlySet<number>;
}

async function refreshTimescale(
  db: Db,
  now: Date,
  oldest: Date | null,
  opts: RefreshOptions & { slices?: Slices | undefined },
): Promise<RefreshSummary["refreshed"]> {
  const watermarks = await readWatermarks(db);
  // Refresh windows reach back to the previous month at least: a refresh only re-materializes the invalidated
  // or never-materialized parts of its window, so a wide window costs little and catches up after downtime.
  const floorStart = addBuckets(alignDown(now, "month"), "month", -1);
  const start = oldest && oldest < floorStart ? oldest : floorStart;
  const result: RefreshSummary["refreshed"] = { hour: null, day: null, month: null };
  for (const level of LEVELS) {
    const view = LEVEL[level].cagg;
    const end = alignDown(now, level);
    // Everything below the watermark is complete: the window starts at it at the latest (no gap after a long
    // pause), and from the beginning when nothing was materialized yet.
    const old = watermarks[level];
    const from = opts.full || !old ? null : alignDown(old < start ? old : start, level);
    if (from && from >= end) continue;
    const windows = level === "hour" && opts.slices && from ? slice(from, end, opts.slices) : [[from, end] as const];
    // Not in a transaction: TimescaleDB refuses refresh_continuous_aggregate inside one.
    for (const [a, b] of windows)
      await db.query(`CALL refresh_continuous_aggregate('${view}', $1::timestamptz, $2::timestamptz)`, [a, b]);
    await db.query("UPDATE rollup_watermarks SET watermark = GREATEST(watermark, $2) WHERE level = $1", [level, end]);
    result[level] = { from: iso(from), to: end.toISOString() };
  }
  return result;
}

/**
 * [from, end) as windows that each hold at most one claimed hour, without the deferred hours (they stay claimed,
 * so reads take them from raw events and the levels above count them dirty until a later run refreshes them).
 */
function slice(from: Date, end: Date, s: Slices): (readonly [Date, Date])[] {
  const cuts = new Set<number>([from.getTime(), end.getTime()]);
  for (const h of [...s.hours.map((d) => d.getTime()), ...s.deferred])
    if (h >= from.getTime() && h < end.getTime()) cuts.add(h).add(h + 3_600_000);
  const points = [...cuts].filter((t) => t <= end.getTime()).sort((a, b) => a - b);
  const out: (readonly [Date, Date])[] = [];
  for (let i = 0; i + 1 < points.length; i++) {
    const a = points[i] as number;
    if (!s.deferred.has(a)) out.push([new Date(a), new Date(points[i + 1] as number)]);
  }
  return out;
}

async function refreshPortable(
  db: Db,
  now: Date,
  claimed: Date[],
  opts: RefreshOptions,
): Promise<RefreshSummary["refreshed"]> {
  return db.transaction(async (tx) => {
    const { rows } = await tx.query<{ level: "hour" | "day" | "month"; watermark: Date | number }>(
      "SELECT level, watermark FROM rollup_watermarks FOR UPDATE",
      [],
    );
    // null: nothing materialized yet ('-infinity').
    const old = Object.fromEntries(
      rows.map((r) => [r.level, opts.full || !(r.watermark instanceof Date) ? null : r.watermark]),
    ) as Record<"hour" | "day" | "month", Date | null>;
    const result: RefreshSummary["refreshed"] = { hour: null, day: null, month: null };
    // Buckets below a level's old watermark that must be recomputed at that level.
    let stale = claimed.map((h) => h.getTime());
    for (const level of LEVELS) {
      const wmOld = old[level];
      const wmNew = new Date(Math.max(alignDown(now, level).getTime(), wmOld?.getTime() ?? 0));
      const redo = wmOld
        ? [...new Set(stale.map((t) => alignDown(new Date(t), level).getTime()))]
            .filter((t) => t < wmOld.getTime() && t < wmNew.getTime())
            .map((t) => new Date(t))
        : [];
      const { table, span, below } = LEVEL[level];
      const into = `${table} (${ROLLUP_KEYS}, ${ROLLUP_COLUMNS})`;
      await tx.query(
        `DELETE FROM ${table} WHERE (bucket >= COALESCE($1::timestamptz, '-infinity') AND bucket < $2) OR bucket = ANY($3::timestamptz[])`,
        [wmOld, wmNew, redo],
      );
      if (level === "hour") {
        await tx.query(
          `INSERT INTO ${into} SELECT ${aggregateEvents()} FROM usage_events e
           WHERE e.ts >= COALESCE($1::timestamptz, '-infinity') AND e.ts < $2 GROUP BY 1, 2, 3, 4`,
          [wmOld, wmNew],
        );
        await tx.query(
          `INSERT INTO ${into} SELECT ${aggregateEvents()}
           FROM unnest($1::timestamptz[]) AS h JOIN usage_events e ON e.ts >= h AND e.ts < h + INTERVAL '1 hour'
           GROUP BY 1, 2, 3, 4`,
          [redo],
        );
      } else {
        const from = LEVEL[below as Level].table;
        const bucket = `date_trunc('${level}', r.bucket, 'UTC')`;
        await tx.query(
          `INSERT INTO ${into} SELECT ${aggregateRollups(bucket)} FROM ${from} r
           WHERE r.bucket >= COALESCE($1::timestamptz, '-infinity') AND r.bucket < $2 GROUP BY 1, 2, 3, 4`,
          [wmOld, wmNew],
        );
        await tx.query(
          `INSERT INTO ${into} SELECT ${aggregateRollups(bucket)}
           FROM unnest($1::timestamptz[]) AS b JOIN ${from} r ON r.bucket >= b AND r.bucket < b + INTERVAL '${span}'
           GROUP BY 1, 2, 3, 4`,
          [redo],
        );
      }
      await tx.query("UPDATE rollup_watermarks SET watermark = $2 WHERE level = $1", [level, wmNew]);
      result[level] = { from: iso(wmOld), to: wmNew.toISOString() };
      // The next level up recomputes every bucket that holds a bucket changed here.
      stale = [...redo.map((d) => d.getTime()), ...rangeStarts(wmOld, wmNew, level)];
    }
    return result;
  });
}

/** Starts of the buckets in [from, to) — at most a handful in steady state; the first run covers everything by range. */
function rangeStarts(from: Date | null, to: Date, level: "hour" | "day" | "month"): number[] {
  const out: number[] = [];
  if (!from) return out;
  for (let t = from; t < to && out.length < 100_000; t = addBuckets(t, level, 1)) out.push(t.getTime());
  return out;
}
