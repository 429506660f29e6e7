// When each distinct value of a unique_count meter was first seen in a range, counted per hour: the hourly increments
// of the range's running distinct count. The count over [from, end of hour h) is the sum of the increments up to h,
// for every h at once — what a reader needs that prices a period hour by hour (a distinct count's hours do not add
// up, but its new values per hour do). Exact, from the same state as every distinct count (distinctSql.ts): a value's
// first instant in [from, to) is the earliest of its raw events before the first midnight after `from` and of the
// first instants of its usage_distinct rows from that midnight on (those before `to`).
import { jsonRows } from "../db/jsonRows.js";
import type { Queryable } from "../db/types.js";
import { addBuckets, alignDown } from "./buckets.js";
import { groupColumns, groupValuesSql } from "./dimensionSql.js";

interface FirstSeenQuery {
  customer: string;
  /** A unique_count meter (another meter has no distinct values: no rows). */
  meter: string;
  from: Date;
  to: Date;
  /** Count per group of these dimensions' values (a value new to a group counts in it). */
  groupBy?: readonly string[] | undefined;
}

interface FirstSeen {
  /** The hour (start) the values were first seen in. */
  hour: Date;
  /** How many values were seen in the range for the first time in that hour. */
  added: number;
  dimensionValues?: (string | null)[];
}

/** Per hour of [from, to) with new values (and per group): how many values of the range were first seen in it. */
export async function firstSeenHours(db: Queryable, q: FirstSeenQuery): Promise<FirstSeen[]> {
  if (q.from >= q.to) return [];
  const fromDay = alignDown(q.from, "day");
  const firstDay = fromDay < q.from ? addBuckets(fromDay, "day", 1) : q.from;
  const rawTo = firstDay < q.to ? firstDay : q.to;
  const params: unknown[] = [q.customer, q.meter, q.from, rawTo, firstDay, q.to];
  const bind = (v: unknown) => {
    params.push(v);
    return `$${params.length}`;
  };
  const groupBy = q.groupBy ?? [];
  const gs = groupColumns(groupBy);
  const values = groupBy.length > 0 ? `, ${groupValuesSql(groupBy, bind).join(", ")}` : "";
  const keys = gs.map((g) => `${g}, `).join("");
  const cells = await jsonRows<(string | number | null)[]>(db, {
    cells: ["extract(epoch FROM hour) * 1000", "added", ...gs].join(", "),
    source: `(
      WITH seen AS (
        SELECT (e.properties ->> m.unique_property) COLLATE "C" AS v, e.dimension_set AS s, e.ts AS t
        FROM usage_events e JOIN meters m ON m.key = e.meter AND m.aggregation = 'unique_count'
        WHERE e.customer_id = $1 AND e.meter = $2 AND e.ts >= $3 AND e.ts < $4
        UNION ALL
        SELECT x.value, x.dimension_set, x.first_ts
        FROM usage_distinct x
        WHERE x.customer_id = $1 AND x.meter = $2 AND x.day >= $5 AND x.day < $6 AND x.first_ts < $6
      ), firsts AS (
        SELECT ${keys}min(g.t) AS t
        FROM (SELECT seen.*${values} FROM seen LEFT JOIN dimension_sets d ON d.id = seen.s) AS g
        WHERE g.v IS NOT NULL
        GROUP BY ${keys}g.v
      )
      SELECT date_trunc('hour', t, 'UTC') AS hour, ${keys}count(*) AS added
      FROM firsts GROUP BY ${["1", ...gs].join(", ")}
    ) AS f`,
    orderBy: ["hour", ...gs.map((g) => `${g} COLLATE "C" NULLS LAST`)].join(", "),
    params,
  });
  return cells.map((c) => ({
    hour: new Date(c[0] as number),
    added: Number(c[1]),
    ...(gs.length > 0 ? { dimensionValues: c.slice(2) as (string | null)[] } : {}),
  }));
}
