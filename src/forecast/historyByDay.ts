// The history figures of many customers (the dashboard's overview), read mostly from the daily rollup: the figures
// are weighted sums of the hours, and the weights change at a few instants only (historyPlan.ts), so the read takes
// whole days from the daily rollup and only the hours around those instants, the window's first day and today from
// the hourly one — through the usage series' dirty-aware plans (planSeries, buildSeriesSql), so an hour not
// refreshed yet counts as it is. The first hour with a figure is found by the hour where the hours are read, and
// otherwise as the first hour of the first day with a figure, by a second read of those days by the hour.
//
// Customers' periods end at different instants (their billing cycles), and the weights with them: each distinct
// period end is one statement, reading only its customers (everyone for the default end, the others' rows left
// aside). Most customers share UTC calendar months; many distinct ends (custom anchors, time zones) make as many
// statements, each reading its own customers' rows only, so the rows read stay about twice those of one read.
import { jsonRows } from "../db/jsonRows.js";
import type { Queryable } from "../db/types.js";
import { Dec } from "../pricing/money.js";
import { buildSeriesSql, planSeries, type RollupState, readState } from "../rollups/series.js";
import type { Histories, HistoryQuery } from "./history.js";
import { planHistory } from "./historyPlan.js";
import { HISTORY_HOURS, type HistoryFigures } from "./project.js";

const HOUR = 3_600_000;
const DAY = 86_400_000;

/** Customers whose period ends at `end`: the listed ones, or everyone but `others`. */
interface EndGroup {
  end: Date;
  customers?: string[];
  others?: ReadonlySet<string>;
}

/** A pair's figures as read, before its first hour is made exact. */
interface Read {
  customer: string;
  meter: string;
  firstHour: number | null;
  firstDay: number | null;
  figures: Omit<HistoryFigures, "first">;
}

/** The figures of every customer (`q.customer` unset). */
export async function readHistoriesByDay(db: Queryable, q: HistoryQuery): Promise<Histories> {
  const nowHour = Math.floor(q.now.getTime() / HOUR) * HOUR;
  const from = new Date(Math.floor((nowHour - HISTORY_HOURS * HOUR) / DAY) * DAY);
  const state = await readState(db, from, new Date(nowHour));
  const reads: Read[] = [];
  // One after the other: `db` may be a transaction.
  for (const group of endGroups(q)) {
    for (const r of await readGroup(db, state, q.now, group)) {
      if (!group.others?.has(r.customer)) reads.push(r);
    }
  }
  const firsts = await firstHours(db, state, reads);
  const out: Histories = new Map();
  for (const r of reads) {
    const byMeter = out.get(r.customer) ?? new Map<string, HistoryFigures>();
    const first =
      r.firstDay === null ? r.firstHour : (firsts.get(pairDay(r.customer, r.meter, r.firstDay)) ?? r.firstDay);
    byMeter.set(r.meter, { first, ...r.figures });
    out.set(r.customer, byMeter);
  }
  return out;
}

/** The distinct period ends and their customers, the default end first. */
function endGroups(q: HistoryQuery): EndGroup[] {
  const byEnd = new Map<number, string[]>();
  for (const [customer, end] of q.periodEnds ?? []) {
    if (end.getTime() === q.periodEnd.getTime()) continue;
    const list = byEnd.get(end.getTime()) ?? [];
    list.push(customer);
    byEnd.set(end.getTime(), list);
  }
  const others = new Set([...byEnd.values()].flat());
  return [{ end: q.periodEnd, others }, ...[...byEnd].map(([end, customers]) => ({ end: new Date(end), customers }))];
}

/**
 * The figures of a group's customers: every read of the plan (one series statement each, at its granularity), its
 * rows weighted by its coefficients and added up per customer and meter. The first hour with a figure among the
 * rows read by the hour, and the first day with a figure among those read by the day, come with them.
 */
async function readGroup(db: Queryable, state: RollupState, now: Date, g: EndGroup): Promise<Read[]> {
  const params: unknown[] = [];
  const bind = (v: unknown) => {
    params.push(v);
    return `$${params.length}`;
  };
  // Each read: one row per customer and meter with data in its ranges, its first bucket and its figures, weighted.
  const selects = planHistory(now, g.end).map((read) => {
    const parts = read.ranges.flatMap((r) => planSeries(read.granularity, r.from, r.to, state));
    const q = { granularity: "first", customers: g.customers, figure: "sum" } as const;
    const series = buildSeriesSql(q, parts, params);
    // A zero coefficient is NULL: the sums skip it (most reads count in some of the four figures only).
    const coefs = read.coefs.map((c) => (c.isZero() ? "NULL::numeric" : `${bind(c.toFixed())}::numeric`)).join(", ");
    return `SELECT s.bucket, s.customer_id, s.meter, s.value, s.event_count, ${read.granularity === "hour"}, ${coefs}
        FROM (${series.text}) AS s`;
  });
  // Which figure of a row counts: for `count` meters its events (a list read once), for `sum` ones its sum.
  const figure = `CASE WHEN t.meter = ANY (ARRAY(SELECT key FROM meters WHERE aggregation = 'count'))
                       THEN t.event_count::numeric ELSE t.value::numeric END`;
  const sums = ["last_week", "w2", "w3", "w4"].map((c) => `coalesce(sum(f.figure * t.${c}), 0)::text`);
  const rows = await jsonRows<[string, string, number | null, number | null, string, string, string, string]>(db, {
    cells: "r.customer_id, r.meter, r.first_hour, r.first_day, r.last_week, r.w2, r.w3, r.w4",
    source: `(
      SELECT t.customer_id, t.meter, extract(epoch FROM min(t.bucket) FILTER (WHERE t.hourly)) * 1000,
             extract(epoch FROM min(t.bucket) FILTER (WHERE NOT t.hourly)) * 1000, ${sums.join(", ")}
      FROM (${selects.join("\n      UNION ALL ")}
      ) AS t(bucket, customer_id, meter, value, event_count, hourly, last_week, w2, w3, w4)
           CROSS JOIN LATERAL (SELECT ${figure} AS figure) AS f
      GROUP BY t.customer_id, t.meter
    ) AS r(customer_id, meter, first_hour, first_day, last_week, w2, w3, w4)
    WHERE r.meter IN (SELECT key FROM meters WHERE aggregation IN ('sum', 'count'))`,
    params,
  });
  return rows.map(([customer, meter, firstHour, firstBucket, lastWeek, w2, w3, w4]) => {
    // The first hour read by the hour, unless a day read whole with a figure comes before it, or is its day.
    const firstDay = firstBucket === null ? null : Math.floor(firstBucket / DAY) * DAY;
    const inDay = firstDay !== null && (firstHour === null || firstHour >= firstDay);
    return {
      customer,
      meter,
      firstHour: inDay ? null : firstHour,
      firstDay: inDay ? firstDay : null,
      figures: { lastWeek: new Dec(lastWeek), weighted: { 2: new Dec(w2), 3: new Dec(w3), 4: new Dec(w4) } },
    };
  });
}

/**
 * The first hour with a figure of each pair whose first figure is in a day read whole: each of those days read by the
 * hour for the customers whose first day it is (their keys find their rows when they are few), one row per pair and
 * day with its first hour there, in one statement. Keyed by customer, meter and day.
 */
async function firstHours(db: Queryable, state: RollupState, reads: readonly Read[]): Promise<Map<string, number>> {
  const byDay = new Map<number, Set<string>>();
  for (const r of reads) {
    if (r.firstDay !== null) byDay.set(r.firstDay, (byDay.get(r.firstDay) ?? new Set()).add(r.customer));
  }
  const out = new Map<string, number>();
  if (byDay.size === 0) return out;
  const params: unknown[] = [];
  const selects = [...byDay].map(([day, customers]) => {
    const parts = planSeries("hour", new Date(day), new Date(day + DAY), state);
    const q = { granularity: "first", customers: [...customers], figure: "sum" } as const;
    const series = buildSeriesSql(q, parts, params);
    return `SELECT ${day}::bigint, s.customer_id, s.meter, extract(epoch FROM s.bucket) * 1000 FROM (${series.text}) AS s`;
  });
  const rows = await jsonRows<[number, string, string, number]>(db, {
    cells: "f.day, f.customer_id, f.meter, f.first",
    source: `(${selects.join("\n      UNION ALL ")}) AS f(day, customer_id, meter, first)`,
    params,
  });
  for (const [day, c, m, first] of rows) out.set(pairDay(c, m, day), first);
  return out;
}

const pairDay = (customer: string, meter: string, day: number) => `${customer}\u0000${meter}\u0000${day}`;
