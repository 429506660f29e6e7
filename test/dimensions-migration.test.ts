// Migration 0013 on a database with usage: rollups made before it (one row per bucket, customer and meter) keep
// answering exactly, and the next refresh rebuilds them keyed by dimension set — on both engines.
import { afterAll, describe, expect, it } from "vitest";
import type { OpenedDb } from "../src/db/open.js";
import { refreshRollups } from "../src/rollups/refresh.js";
import { rangeTotals } from "../src/rollups/totals.js";
import { BACKENDS, migratedBefore, type TestDatabase } from "./helpers/databases.js";

describe.each(BACKENDS)("migration 0013 on %s", (backend) => {
  let database: TestDatabase;
  let opened: OpenedDb;
  afterAll(async () => {
    await opened?.db.close();
    await database?.drop();
  });

  it("when rollups were materialized before dimensions existed, then totals stay exact through the migration and the next refresh", async () => {
    const start = await migratedBefore(backend, "0013");
    ({ database, opened } = start);
    const { db } = opened;
    const { engine } = start;
    await db.query(
      `INSERT INTO usage_events (ts, customer_id, meter, value, event_id, properties, received_at)
       SELECT '2026-10-01T00:00:00Z'::timestamptz + (g * INTERVAL '37 minutes'), 'c' || (g % 3), 'm', g % 10, 'e' || g,
              NULL, now()
       FROM generate_series(1, 600) g`,
      [],
    );
    await db.query("INSERT INTO meters (key, name, unit, aggregation) VALUES ('m', 'm', 'u', 'sum')", []);
    const to = new Date("2026-11-01T00:00:00Z");
    if (engine === "timescale") {
      for (const view of ["usage_hourly", "usage_daily", "usage_monthly"])
        await db.query(`CALL refresh_continuous_aggregate('${view}', NULL, $1::timestamptz)`, [to]);
    } else {
      await db.query(
        `INSERT INTO usage_hourly_mat
         SELECT date_trunc('hour', ts, 'UTC'), customer_id, meter, sum(value), count(*), max(value),
                (array_agg(value ORDER BY tally_last_key(ts, value) DESC))[1], max(tally_last_key(ts, value)), max(ts)
         FROM usage_events GROUP BY 1, 2, 3`,
        [],
      );
    }
    await db.query("UPDATE rollup_watermarks SET watermark = $1 WHERE level = 'hour'", [to]);
    const expected = async () =>
      (
        await db.query<{ c: string; s: string; n: string }>(
          "SELECT customer_id AS c, sum(value)::text AS s, count(*)::text AS n FROM usage_events GROUP BY 1 ORDER BY 1",
          [],
        )
      ).rows.map((r) => [r.c, r.s, r.n]);
    const totals = async () =>
      (await rangeTotals(db, { from: new Date("2026-10-01T00:00:00Z"), to })).map((t) => [t.customer, t.sum, t.count]);
    await start.finish();
    expect(await totals()).toEqual(await expected());
    const { rows } = await db.query<{ dimension_set: number }>("SELECT DISTINCT dimension_set FROM usage_events", []);
    expect(rows).toEqual([{ dimension_set: 0 }]);
    await refreshRollups(db, engine, new Date("2026-11-03T00:00:00Z"));
    expect(await totals()).toEqual(await expected());
    const hourly = await db.query<{ n: string }>("SELECT count(*)::text AS n FROM usage_hourly_mat", []);
    expect(Number(hourly.rows[0]?.n)).toBeGreaterThan(300);
  });
});
