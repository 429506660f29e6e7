// The history a forecast projects from, reduced in the database: the last four weeks of usage of one customer or of
// every customer (the dashboard's overview) become a few figures per customer and `sum`/`count` meter
// (HistoryFigures) — one row each. The same figures as historyFigures (project.ts) computes from a map of hours;
// test/forecast-history.test.ts holds both reads to it on both engines.
//
// One customer's history is at most 672 hourly rows per meter: they are read by the hour (the usage series) and
// weighted by their hour of the week in one statement. Everyone's is millions of hourly rows: it is read mostly by
// the day, with the hours where the weights change (historyByDay.ts).
import { jsonRows } from "../db/jsonRows.js";
import type { Queryable } from "../db/types.js";
import { Dec } from "../pricing/money.js";
import { addBuckets, alignDown } from "../rollups/buckets.js";
import { prepareSeries } from "../rollups/series.js";
import { readHistoriesByDay } from "./historyByDay.js";
import { HISTORY_HOURS, type HistoryFigures, PROFILE_WEEKS, restWeights, WEEK_HOURS } from "./project.js";

/** customer → meter → figures, for the meters aggregated by `sum` or `count` with history. */
export type Histories = Map<string, Map<string, HistoryFigures>>;

export interface HistoryQuery {
  /** One customer's history; unset: everyone's. */
  customer?: string | undefined;
  now: Date;
  /** The end of the current period of every customer not in `periodEnds`. */
  periodEnd: Date;
  /** Customers whose current period ends elsewhere (their own billing cycle). */
  periodEnds?: ReadonlyMap<string, Date> | undefined;
}

export async function readHistories(db: Queryable, q: HistoryQuery): Promise<Histories> {
  if (q.customer === undefined) return readHistoriesByDay(db, q);
  return readCustomerHistory(db, q.customer, q.now, q.periodEnds?.get(q.customer) ?? q.periodEnd);
}

/** One customer's figures: its hours of the last four weeks, each weighted by its hour of the week. */
async function readCustomerHistory(db: Queryable, customer: string, now: Date, periodEnd: Date): Promise<Histories> {
  const nowHour = alignDown(now, "hour");
  // Each hour's sum of values and number of events, as the usage series reads them (dirty hours and the ones not
  // rolled up yet from raw events).
  const series = await prepareSeries(db, {
    granularity: "hour",
    from: addBuckets(nowHour, "hour", -HISTORY_HOURS),
    to: nowHour,
    customer,
    figure: "sum",
  });
  const params = [...series.params];
  const bind = (v: unknown) => {
    params.push(v);
    return `$${params.length}`;
  };
  const since = (hours: number) => `h.bucket >= ${bind(addBuckets(nowHour, "hour", -hours))}::timestamptz`;
  const weights = bind(restWeights(now, periodEnd).map((w) => w.toFixed()));
  const weight = `(${weights}::numeric[])[(floor(extract(epoch FROM s.bucket) / 3600)::bigint % ${WEEK_HOURS}) + 1]`;
  const figure = "CASE m.aggregation WHEN 'count' THEN s.event_count::numeric ELSE s.value::numeric END";
  const weighted = PROFILE_WEEKS.map(
    (w) => `coalesce(sum(h.weighted) FILTER (WHERE ${since(w * WEEK_HOURS)}), 0)::text`,
  );
  // Each hour's figure and weighted figure are computed once, in the inner select, for the four sums that take them.
  const rows = await jsonRows<[string, string, number, string, string, string, string]>(db, {
    cells: "r.customer_id, r.meter, r.first, r.last_week, r.w2, r.w3, r.w4",
    source: `(
      SELECT h.customer_id, h.meter, extract(epoch FROM min(h.bucket)) * 1000,
             coalesce(sum(h.figure) FILTER (WHERE ${since(WEEK_HOURS)}), 0)::text, ${weighted.join(", ")}
      FROM (
        SELECT s.customer_id, s.meter, s.bucket, f.figure, f.figure * ${weight} AS weighted
        FROM (${series.text}) AS s JOIN meters m ON m.key = s.meter AND m.aggregation IN ('sum', 'count')
             CROSS JOIN LATERAL (SELECT ${figure} AS figure) AS f
      ) AS h
      GROUP BY h.customer_id, h.meter
    ) AS r(customer_id, meter, first, last_week, w2, w3, w4)`,
    params,
  });
  const byMeter = new Map<string, HistoryFigures>();
  for (const [, meter, first, lastWeek, w2, w3, w4] of rows) {
    byMeter.set(meter, {
      first,
      lastWeek: new Dec(lastWeek),
      weighted: { 2: new Dec(w2), 3: new Dec(w3), 4: new Dec(w4) },
    });
  }
  return byMeter.size > 0 ? new Map([[customer, byMeter]]) : new Map();
}
