// Planner statistics where nothing else keeps them. The embedded engine has no autovacuum, so without this its
// planner would guess forever that a scan returns one row and plan for that: a nested loop over 1,300 rollup rows
// of a grouped read instead of a hash join, sorts where it could hash. The analyze-tables job does roughly what
// autovacuum's analyze does on a server, from what the catalog knows without the statistics collector (which the
// embedded engine does not feed): every table (each TimescaleDB chunk is one) that was never analyzed and has
// pages, or that grew by more than 10% since its last ANALYZE (or index build), is analyzed — one statement per
// table, so that requests interleave with a long backlog instead of waiting for all of it.
import { quoteIdent } from "./server.js";
import type { Queryable } from "./types.js";

/** Growth, as a share of the pages the last ANALYZE saw, after which a table is analyzed again. */
const GROWTH = 0.1;

export async function analyzeChangedTables(db: Queryable): Promise<{ tables_analyzed: number; pages: number }> {
  const { rows } = await db.query<{ schema: string; name: string; pages: string }>(
    `SELECT n.nspname AS schema, c.relname AS name, t.pages::text AS pages
     FROM pg_class c
     JOIN pg_namespace n ON n.oid = c.relnamespace,
     LATERAL (SELECT pg_relation_size(c.oid) / current_setting('block_size')::bigint AS pages) t
     WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
       AND t.pages > 0
       AND (c.reltuples < 0 OR t.pages > 1 + (1 + $1::float8) * c.relpages)
     ORDER BY t.pages DESC`,
    [GROWTH],
  );
  let pages = 0;
  for (const r of rows) {
    await db.query(`ANALYZE ${quoteIdent(r.schema)}.${quoteIdent(r.name)}`, []);
    pages += Number(r.pages);
  }
  return { tables_analyzed: rows.length, pages };
}
