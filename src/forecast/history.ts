// The history a forecast projects from, reduced in the database: the last four weeks of hourly rollups of one
// customer or of every customer (the dashboard's overview) become a few figures per customer and `sum`/`count`
// meter (HistoryFigures) — one row each, however many hours there were. The same figures as historyFigures
// (project.ts) computes from a map of hours; test/forecast-units.test.ts holds both to the hour-by-hour reference.
import { jsonRows } from "../db/jsonRows.js";
import type { Queryable } from "../db/types.js";
import { Dec } from "../pricing/money.js";
import { addBuckets, alignDown } from "../rollups/buckets.js";
import { prepareSeries } from "../rollups/series.js";
import { HISTORY_HOURS, type HistoryFigures, PROFILE_WEEKS, restWeights, WEEK_HOURS } from "./project.js";

/** customer → meter → figures, for the meters aggregated by `sum` or `count` with history. */
export type Histories = Map<string, Map<string, HistoryFigures>>;

export async function readHistories(
  db: Queryable,
  q: { customer?: string | undefined; now: Date; periodEnd: Date },
): Promise<Histories> {
  const nowHour = alignDown(q.now, "hour");
  // Each hour's sum of values and number of events, as the usage series reads them (dirty hours and the ones not
  // rolled up yet from raw events).
  const series = await prepareSeries(db, {
    granularity: "hour",
    from: addBuckets(nowHour, "hour", -HISTORY_HOURS),
    to: nowHour,
    customer: q.customer,
    figure: "sum",
  });
  const params = [...series.params];
  const bind = (v: unknown) => {
    params.push(v);
    return `$${params.length}`;
  };
  const since = (hours: number) => `h.bucket >= ${bind(addBuckets(nowHour, "hour", -hours))}::timestamptz`;
  const weights = `{${restWeights(q.now, q.periodEnd)
    .map((w) => w.toFixed())
    .join(",")}}`;
  const weight = `(${bind(weights)}::numeric[])[(floor(extract(epoch FROM s.bucket) / 3600)::bigint % ${WEEK_HOURS}) + 1]`;
  const figure = "CASE m.aggregation WHEN 'count' THEN s.event_count::numeric ELSE s.value::numeric END";
  const weighted = PROFILE_WEEKS.map(
    (w) => `coalesce(sum(h.weighted) FILTER (WHERE ${since(w * WEEK_HOURS)}), 0)::text`,
  );
  // Each hour's figure and weighted figure are computed once, in the inner select, for the four sums that take them.
  const rows = await jsonRows<[string, string, number, string, ...string[]]>(db, {
    cells: "r.customer_id, r.meter, r.first, r.last_week, r.w2, r.w3, r.w4",
    source: `(
      SELECT h.customer_id, h.meter, extract(epoch FROM min(h.bucket)) * 1000,
             coalesce(sum(h.figure) FILTER (WHERE ${since(WEEK_HOURS)}), 0)::text, ${weighted.join(", ")}
      FROM (
        SELECT s.customer_id, s.meter, s.bucket, f.figure, f.figure * ${weight} AS weighted
        FROM (${series.text}) AS s JOIN meters m ON m.key = s.meter AND m.aggregation IN ('sum', 'count'),
             LATERAL (SELECT ${figure} AS figure) AS f
      ) AS h
      GROUP BY h.customer_id, h.meter
    ) AS r(customer_id, meter, first, last_week, w2, w3, w4)`,
    params,
  });
  const out: Histories = new Map();
  for (const [customer, meter, first, lastWeek, w2, w3, w4] of rows) {
    const byMeter = out.get(customer) ?? new Map<string, HistoryFigures>();
    byMeter.set(meter, {
      first,
      lastWeek: new Dec(lastWeek),
      weighted: { 2: new Dec(w2 ?? 0), 3: new Dec(w3 ?? 0), 4: new Dec(w4 ?? 0) },
    });
    out.set(customer, byMeter);
  }
  return out;
}
