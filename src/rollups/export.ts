// CSV export of usage series, streamed by the database itself (COPY ... TO STDOUT). COPY takes no bind
// parameters, so values are inlined as literals escaped by pg.escapeLiteral. Text cells are kept from being read
// as formulas by spreadsheets (safeCell).
import pg from "pg";
import type { Db } from "../db/types.js";
import { groupColumns } from "./dimensionSql.js";
import { LEVEL } from "./levels.js";
import { prepareSeries, type SeriesQuery } from "./series.js";

function literal(v: unknown): string {
  if (v instanceof Date) return `${pg.escapeLiteral(v.toISOString())}::timestamptz`;
  if (typeof v === "string") return pg.escapeLiteral(v);
  throw new Error(`cannot inline ${typeof v}`);
}

/** Replaces $n placeholders with escaped literals (the statement has no $ inside its own string literals). */
export function inlineParams(text: string, params: readonly unknown[]): string {
  return text.replace(/\$(\d+)\b/g, (_, n: string) => literal(params[Number(n) - 1]));
}

const utc = (col: string) => `to_char((${col}) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')`;
/**
 * A text cell no spreadsheet reads as a formula (OWASP "CSV Injection"): a single quote goes before every =, +, -,
 * @, tab or CR that starts the cell or follows a `,` or `;` (with only white space or double quotes between). The
 * start alone is not enough: a program that splits lines on `;` (the list separator in many locales) starts a cell
 * at each one, so the customer `a;=x` would give it the formula `=x`. The one definition of the rule: every text
 * column of the export goes through it.
 */
const safeCell = (col: string) => `regexp_replace(${col}, '(^|[,;])([[:space:]"]*)([-=+@\\t\\r])', '\\1\\2''\\3', 'g')`;

function exportSelect(q: SeriesQuery, series: { text: string; params: unknown[] }): string {
  const inner = inlineParams(series.text, series.params);
  // Grouped: one more column, the group's values as a JSON object (keys in group_by order).
  const groupBy = q.groupBy ?? [];
  const gs = groupColumns(groupBy);
  const dims =
    groupBy.length > 0
      ? `,\n           ${safeCell(`json_build_object(${groupBy.map((k, i) => `${pg.escapeLiteral(k)}, s.${gs[i]}`).join(", ")})::text`)} AS dimensions`
      : "";
  const order = gs.map((g) => `, s.${g} COLLATE "C" NULLS LAST`).join("");
  return `
    SELECT ${utc("s.bucket")} AS start,
           ${utc(`s.bucket + INTERVAL '${LEVEL[q.granularity].span}'`)} AS "end",
           ${safeCell("s.customer_id")} AS customer,
           ${safeCell("s.meter")} AS meter,
           CASE m.aggregation WHEN 'sum' THEN s.value_sum WHEN 'count' THEN s.event_count
                              WHEN 'max' THEN s.value_max WHEN 'min' THEN s.value_min WHEN 'avg' THEN s.value_avg
                              WHEN 'unique_count' THEN s.distinct_count ELSE s.last_value END AS value,
           s.event_count AS count${dims}
    FROM (${inner}) s
    JOIN meters m ON m.key = s.meter
    ORDER BY s.bucket, s.customer_id, s.meter${order}`;
}

export async function* exportCsv(db: Db, q: SeriesQuery): AsyncIterable<Buffer> {
  yield* db.copyOut(exportSelect(q, await prepareSeries(db, q)), "FORMAT csv, HEADER");
}
