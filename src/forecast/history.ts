// The history a forecast projects from, reduced in the database: the last four weeks of hourly rollups of one
// customer or of every customer (the dashboard's overview) become a few figures per customer and `sum`/`count`
// meter (HistoryFigures) — one row each, however many hours there were. The same figures as historyFigures
// (project.ts) computes from a map of hours; test/forecast-units.test.ts holds both to the hour-by-hour reference.
// Customers' periods end at different instants (their billing cycles): the weights of each distinct period end are
// one row of a matrix, so every customer is still read in one query.
import { jsonRows } from "../db/jsonRows.js";
import type { Queryable } from "../db/types.js";
import { Dec } from "../pricing/money.js";
import { addBuckets, alignDown } from "../rollups/buckets.js";
import { prepareSeries } from "../rollups/series.js";
import { HISTORY_HOURS, type HistoryFigures, PROFILE_WEEKS, restWeights, WEEK_HOURS } from "./project.js";

/** customer → meter → figures, for the meters aggregated by `sum` or `count` with history. */
export type Histories = Map<string, Map<string, HistoryFigures>>;

interface HistoryQuery {
  customer?: string | undefined;
  now: Date;
  /** The end of the current period of every customer not in `periodEnds`. */
  periodEnd: Date;
  /** Customers whose current period ends elsewhere (their own billing cycle). */
  periodEnds?: ReadonlyMap<string, Date> | undefined;
}

export async function readHistories(db: Queryable, q: HistoryQuery): Promise<Histories> {
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
  const ends = periodEndRows(q);
  const matrix = `{${ends.rows
    .map(
      (end) =>
        `{${restWeights(q.now, end)
          .map((w) => w.toFixed())
          .join(",")}}`,
    )
    .join(",")}}`;
  const row = ends.join ? "coalesce(pe.k, 1)" : "1";
  const weight = `(${bind(matrix)}::numeric[][])[${row}][(floor(extract(epoch FROM s.bucket) / 3600)::bigint % ${WEEK_HOURS}) + 1]`;
  const join = ends.join
    ? `LEFT JOIN unnest(${bind(ends.join.customers)}::text[], ${bind(ends.join.rows)}::int[]) AS pe(customer_id, k)
               ON pe.customer_id = s.customer_id`
    : "";
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
        FROM (${series.text}) AS s JOIN meters m ON m.key = s.meter AND m.aggregation IN ('sum', 'count')
             ${join}
             CROSS JOIN LATERAL (SELECT ${figure} AS figure) AS f
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

/**
 * The distinct period ends, the default first (row 1 of the weights), and — when some customers' periods end
 * elsewhere — which row each of those customers takes.
 */
function periodEndRows(q: HistoryQuery): { rows: Date[]; join?: { customers: string[]; rows: number[] } } {
  const rows = [q.periodEnd];
  const rowOf = new Map([[q.periodEnd.getTime(), 1]]);
  const customers: string[] = [];
  const indexes: number[] = [];
  for (const [customer, end] of q.periodEnds ?? []) {
    if (q.customer !== undefined && customer !== q.customer) continue;
    let k = rowOf.get(end.getTime());
    if (k === 1) continue;
    if (k === undefined) {
      rows.push(end);
      k = rows.length;
      rowOf.set(end.getTime(), k);
    }
    customers.push(customer);
    indexes.push(k);
  }
  return customers.length ? { rows, join: { customers, rows: indexes } } : { rows };
}
