// The rollup contract: the same scenarios on the embedded TimescaleDB and the real PostgreSQL (portable engine),
// each checked against numbers computed by hand, and the two engines' answers compared with each other.
import { Decimal as Decimal20 } from "decimal.js";
import fc from "fast-check";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../src/clock.js";
import { rangeTotals } from "../src/rollups/totals.js";
import { bothEngines } from "./helpers/both.js";
import { BACKENDS, type TestBackend } from "./helpers/databases.js";
import { defineMeters, postJson } from "./helpers/events.js";
import { admin, startTestTally, type TestTally } from "./helpers/tally.js";

/** Enough digits for any sum of events divided exactly before rounding. */
const Decimal = Decimal20.clone({ precision: 60 });

const NOW = "2026-11-03T12:30:00Z";

/** An average as Tally figures it: sum ÷ count, rounded half away from zero to 9 places, trailing zeros trimmed. */
const average = (sum: string, count: string) =>
  new Decimal(sum).div(count).toDecimalPlaces(9, Decimal.ROUND_HALF_UP).toFixed().replace(/^-0$/, "0");

type Point = { start: string; end: string; value: string; count: number };

function helpers(backend: TestBackend, t: TestTally) {
  const usage = async (customer: string, meter: string, granularity: string, from: string, to: string) => {
    const res = await request(t.tally.app)
      .get("/v1/usage")
      .query({ customer, meter, granularity, from, to })
      .set(admin);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return res.body.data as Point[];
  };
  const refresh = async () => {
    const res = await request(t.tally.app).post("/v1/jobs/refresh-rollups/run").set(admin);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return res.body;
  };
  const ingest = async (events: object[]) => {
    const res = await postJson(t.tally, events);
    expect(res.status, JSON.stringify(res.body)).toBe(202);
  };
  return { backend, t, usage, refresh, ingest };
}

// Each test runs its scenario on both engines, one after the other, and compares what each recorded.
describe("rollup contract", { timeout: 240_000 }, () => {
  const engines: ReturnType<typeof helpers>[] = [];
  const both = bothEngines(engines);

  beforeAll(async () => {
    for (const backend of BACKENDS) {
      const t = await startTestTally(backend, { clock: new ManualClock(NOW) });
      engines.push(helpers(backend, t));
      await defineMeters(t.tally, { calls: "sum", hits: "count", seats: "max", plan: "last", low: "min", mean: "avg" });
    }
  });
  afterAll(async () => {
    for (const e of engines) await e.t.close();
  });

  it("when sum, count, max and last meters get events over several hours, then each bucket holds its aggregation", () =>
    both(async ({ usage, refresh, ingest, record }) => {
      const c = "agg";
      await ingest([
        { id: "1", customer: c, meter: "calls", value: "1.5", timestamp: "2026-11-02T10:05:00Z" },
        { id: "2", customer: c, meter: "calls", value: "2.25", timestamp: "2026-11-02T10:55:00Z" },
        { id: "3", customer: c, meter: "calls", value: 4, timestamp: "2026-11-02T11:00:00Z" },
        { id: "4", customer: c, meter: "hits", value: 9, timestamp: "2026-11-02T10:10:00Z" },
        { id: "5", customer: c, meter: "hits", timestamp: "2026-11-02T10:20:00Z" },
        { id: "6", customer: c, meter: "seats", value: 3, timestamp: "2026-11-02T10:00:00Z" },
        { id: "7", customer: c, meter: "seats", value: 8, timestamp: "2026-11-02T10:30:00Z" },
        { id: "8", customer: c, meter: "seats", value: 5, timestamp: "2026-11-02T11:30:00Z" },
        { id: "9", customer: c, meter: "plan", value: 2, timestamp: "2026-11-02T10:40:00Z" },
        { id: "10", customer: c, meter: "plan", value: 1, timestamp: "2026-11-02T10:50:00Z" },
        { id: "11", customer: c, meter: "plan", value: 3, timestamp: "2026-11-01T09:00:00Z" },
      ]);
      const day = ["2026-11-02T00:00:00Z", "2026-11-03T00:00:00Z"] as const;
      const expected = {
        calls: [
          { start: "2026-11-02T10:00:00Z", end: "2026-11-02T11:00:00Z", value: "3.75", count: 2 },
          { start: "2026-11-02T11:00:00Z", end: "2026-11-02T12:00:00Z", value: "4", count: 1 },
        ],
        hits: [{ start: "2026-11-02T10:00:00Z", end: "2026-11-02T11:00:00Z", value: "2", count: 2 }],
        seats: [
          { start: "2026-11-02T10:00:00Z", end: "2026-11-02T11:00:00Z", value: "8", count: 2 },
          { start: "2026-11-02T11:00:00Z", end: "2026-11-02T12:00:00Z", value: "5", count: 1 },
        ],
        plan: [{ start: "2026-11-02T10:00:00Z", end: "2026-11-02T11:00:00Z", value: "1", count: 2 }],
      };
      for (const phase of ["fresh", "refreshed"]) {
        if (phase === "refreshed") await refresh();
        for (const [meter, points] of Object.entries(expected)) {
          expect(record(`agg.hour.${meter}.${phase}`, await usage(c, meter, "hour", ...day))).toEqual(points);
        }
        expect(
          record(`agg.month.${phase}`, await usage(c, "plan", "month", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z")),
        ).toEqual([{ start: "2026-11-01T00:00:00Z", end: "2026-12-01T00:00:00Z", value: "1", count: 3 }]);
        expect(await usage(c, "seats", "day", "2026-11-01T00:00:00Z", "2026-11-04T00:00:00Z")).toEqual([
          { start: "2026-11-02T00:00:00Z", end: "2026-11-03T00:00:00Z", value: "8", count: 3 },
        ]);
      }
    }));

  it("when events straddle a month boundary, then hours, days and months split exactly there", () =>
    both(async ({ usage, refresh, ingest, record }) => {
      const c = "boundary";
      await ingest([
        { id: "a", customer: c, meter: "calls", value: 1, timestamp: "2026-10-31T23:59:59.999Z" },
        { id: "b", customer: c, meter: "calls", value: 10, timestamp: "2026-11-01T00:00:00Z" },
        { id: "c", customer: c, meter: "calls", value: 100, timestamp: "2026-11-01T00:59:59.999999Z" },
      ]);
      for (const phase of ["fresh", "refreshed"]) {
        if (phase === "refreshed") await refresh();
        expect(
          record(
            `boundary.month.${phase}`,
            await usage(c, "calls", "month", "2026-10-01T00:00:00Z", "2026-12-01T00:00:00Z"),
          ),
        ).toEqual([
          { start: "2026-10-01T00:00:00Z", end: "2026-11-01T00:00:00Z", value: "1", count: 1 },
          { start: "2026-11-01T00:00:00Z", end: "2026-12-01T00:00:00Z", value: "110", count: 2 },
        ]);
        expect(await usage(c, "calls", "day", "2026-10-31T00:00:00Z", "2026-11-02T00:00:00Z")).toEqual([
          { start: "2026-10-31T00:00:00Z", end: "2026-11-01T00:00:00Z", value: "1", count: 1 },
          { start: "2026-11-01T00:00:00Z", end: "2026-11-02T00:00:00Z", value: "110", count: 2 },
        ]);
        expect(await usage(c, "calls", "hour", "2026-10-31T23:00:00Z", "2026-11-01T02:00:00Z")).toEqual([
          { start: "2026-10-31T23:00:00Z", end: "2026-11-01T00:00:00Z", value: "1", count: 1 },
          { start: "2026-11-01T00:00:00Z", end: "2026-11-01T01:00:00Z", value: "110", count: 2 },
        ]);
      }
    }));

  it("when a late event lands in an hour, day and month already materialized, then it counts at once and after refresh", () =>
    both(async ({ t, usage, refresh, ingest, record }) => {
      const c = "late";
      await ingest([{ id: "on-time", customer: c, meter: "calls", value: 5, timestamp: "2026-10-20T08:15:00Z" }]);
      await ingest([{ id: "seat-1", customer: c, meter: "seats", value: 4, timestamp: "2026-10-20T08:15:00Z" }]);
      await refresh();
      const { rows } = await t.tally.ctx.db.query<{ n: string }>("SELECT count(*) AS n FROM rollup_invalidations", []);
      expect(rows[0]?.n).toBe("0");
      await ingest([
        { id: "late-1", customer: c, meter: "calls", value: 7, timestamp: "2026-10-20T08:45:00Z" },
        { id: "late-2", customer: c, meter: "seats", value: 9, timestamp: "2026-10-20T08:59:00Z" },
      ]);
      const check = async (phase: string) => {
        expect(
          record(`late.hour.${phase}`, await usage(c, "calls", "hour", "2026-10-20T08:00:00Z", "2026-10-20T09:00:00Z")),
        ).toEqual([{ start: "2026-10-20T08:00:00Z", end: "2026-10-20T09:00:00Z", value: "12", count: 2 }]);
        expect(await usage(c, "calls", "day", "2026-10-20T00:00:00Z", "2026-10-21T00:00:00Z")).toEqual([
          { start: "2026-10-20T00:00:00Z", end: "2026-10-21T00:00:00Z", value: "12", count: 2 },
        ]);
        expect(await usage(c, "calls", "month", "2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z")).toEqual([
          { start: "2026-10-01T00:00:00Z", end: "2026-11-01T00:00:00Z", value: "12", count: 2 },
        ]);
        expect(await usage(c, "seats", "month", "2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z")).toEqual([
          { start: "2026-10-01T00:00:00Z", end: "2026-11-01T00:00:00Z", value: "9", count: 2 },
        ]);
        const totals = await rangeTotals(t.tally.ctx.db, {
          from: new Date("2026-10-01T00:00:00Z"),
          to: new Date("2026-11-01T00:00:00Z"),
          customer: c,
        });
        expect(totals.map((x) => [x.meter, x.sum, x.count, x.max])).toEqual([
          ["calls", "12", "2", "7"],
          ["seats", "13", "2", "9"],
        ]);
      };
      await check("before refresh");
      const run = await refresh();
      expect(run.summary.claimed_hours).toBeGreaterThanOrEqual(1);
      await check("after refresh");
    }));

  it("when a range holds no events, then the series is empty", () =>
    both(async ({ usage, ingest, record }) => {
      await ingest([{ id: "e1", customer: "empty", meter: "calls", value: 1, timestamp: "2026-11-02T10:00:00Z" }]);
      expect(
        record("empty", await usage("empty", "calls", "day", "2026-10-01T00:00:00Z", "2026-10-10T00:00:00Z")),
      ).toEqual([]);
    }));

  it("when values are large, negative or have many decimals, then sums are exact", () =>
    both(async ({ usage, refresh, ingest, record }) => {
      const c = "big";
      await ingest([
        { id: "1", customer: c, meter: "calls", value: "999999999999999999", timestamp: "2026-11-02T01:00:00Z" },
        { id: "2", customer: c, meter: "calls", value: "999999999999999999", timestamp: "2026-11-02T01:01:00Z" },
        { id: "3", customer: c, meter: "calls", value: "0.000000001", timestamp: "2026-11-02T01:02:00Z" },
        { id: "4", customer: c, meter: "calls", value: "-0.000000002", timestamp: "2026-11-02T02:02:00Z" },
        { id: "5", customer: c, meter: "seats", value: "123456789.123456789", timestamp: "2026-11-02T02:02:00Z" },
      ]);
      for (const phase of ["fresh", "refreshed"]) {
        if (phase === "refreshed") await refresh();
        expect(
          record(`big.${phase}`, await usage(c, "calls", "month", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z")),
        ).toEqual([
          {
            start: "2026-11-01T00:00:00Z",
            end: "2026-12-01T00:00:00Z",
            value: "1999999999999999997.999999999",
            count: 4,
          },
        ]);
        expect(await usage(c, "seats", "hour", "2026-11-02T00:00:00Z", "2026-11-03T00:00:00Z")).toEqual([
          { start: "2026-11-02T02:00:00Z", end: "2026-11-02T03:00:00Z", value: "123456789.123456789", count: 1 },
        ]);
      }
    }));

  it("when 'last' events share the latest timestamp, then the greatest value wins, the same on every level", () =>
    both(async ({ usage, refresh, ingest, record }) => {
      const c = "ties";
      await ingest([
        { id: "1", customer: c, meter: "plan", value: 4, timestamp: "2026-11-02T05:00:00Z" },
        { id: "2", customer: c, meter: "plan", value: 6, timestamp: "2026-11-02T05:00:00Z" },
        { id: "3", customer: c, meter: "plan", value: 5, timestamp: "2026-11-02T05:00:00Z" },
        { id: "4", customer: c, meter: "plan", value: 9, timestamp: "2026-11-02T04:59:59Z" },
      ]);
      for (const phase of ["fresh", "refreshed"]) {
        if (phase === "refreshed") await refresh();
        for (const g of ["hour", "day", "month"]) {
          const [from, to] =
            g === "month"
              ? ["2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"]
              : ["2026-11-02T00:00:00Z", "2026-11-03T00:00:00Z"];
          const points = await usage(c, "plan", g, from, to);
          expect(record(`ties.${g}.${phase}`, points.at(-1)?.value)).toBe("6");
        }
      }
    }));

  it("property: for random events, late events and refreshes, every series equals the answer from raw events", () =>
    both(async ({ backend, t, usage, refresh, ingest }) => {
      const db = t.tally.ctx.db;
      const start = Date.parse("2026-09-29T13:00:00Z");
      const span = Date.parse(NOW) - start;
      const event = fc.record({
        at: fc.integer({ min: 0, max: span }),
        meter: fc.constantFrom("calls", "seats", "plan", "low", "mean"),
        value: fc.oneof(fc.integer({ min: 0, max: 1000 }).map(String), fc.constantFrom("0.5", "2.25", "7.000000001")),
      });
      const ranges = [
        ["hour", "2026-10-20T00:00:00Z", "2026-11-04T00:00:00Z"],
        ["day", "2026-09-01T00:00:00Z", "2026-11-04T00:00:00Z"],
        ["month", "2026-09-01T00:00:00Z", "2026-12-01T00:00:00Z"],
      ] as const;
      let run = 0;
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.array(event, { minLength: 1, maxLength: 12 }), { minLength: 1, maxLength: 3 }),
          fc.array(fc.boolean(), { minLength: 3, maxLength: 3 }),
          async (batches, refreshAfter) => {
            const c = `prop-${backend}-${++run}`;
            let n = 0;
            for (const [i, batch] of batches.entries()) {
              await ingest(
                batch.map((e) => ({
                  id: String(n++),
                  customer: c,
                  meter: e.meter,
                  value: e.value,
                  timestamp: new Date(start + e.at).toISOString(),
                })),
              );
              if (refreshAfter[i]) await refresh();
            }
            for (const [g, from, to] of ranges) {
              const { rows } = await db.query<{
                start: Date;
                meter: string;
                s: string;
                n: string;
                mx: string;
                mn: string;
                l: string;
              }>(
                `SELECT date_trunc($4, ts, 'UTC') AS start, meter, trim_scale(sum(value))::text AS s, count(*)::text AS n,
                      trim_scale(max(value))::text AS mx, trim_scale(min(value))::text AS mn,
                      trim_scale((array_agg(value ORDER BY ts DESC, value DESC))[1])::text AS l
               FROM usage_events WHERE customer_id = $1 AND ts >= $2 AND ts < $3 GROUP BY 1, 2 ORDER BY 2, 1`,
                [c, new Date(from), new Date(to), g],
              );
              for (const meter of ["calls", "seats", "plan", "low", "mean"] as const) {
                const figure = { calls: "s", seats: "mx", plan: "l", low: "mn" } as const;
                const expected = rows
                  .filter((r) => r.meter === meter)
                  .map((r) => ({
                    start: r.start.toISOString().replace(".000Z", "Z"),
                    value: meter === "mean" ? average(r.s, r.n) : r[figure[meter]],
                    count: Number(r.n),
                  }));
                const got = (await usage(c, meter, g, from, to)).map(({ start, value, count }) => ({
                  start,
                  value,
                  count,
                }));
                expect(got, `${g} ${meter}`).toEqual(expected);
              }
            }
          },
        ),
        { numRuns: 30, endOnFailure: true },
      );
    }));

  it("property: totals over any range (mid-hour bounds too) equal raw events, and adjacent ranges add up", () =>
    both(async ({ backend, t, refresh, ingest }) => {
      const db = t.tally.ctx.db;
      const start = Date.parse("2026-09-29T13:00:00Z");
      const end = Date.parse(NOW);
      const c = `totals-${backend}`;
      const events = Array.from({ length: 60 }, (_, i) => ({
        id: `t${i}`,
        customer: c,
        meter: (["calls", "seats", "plan", "low", "mean"] as const)[i % 5],
        value: String((i * 37) % 101),
        timestamp: new Date(start + Math.floor((((i * 7919) % 1000) / 1000) * (end - start))).toISOString(),
      }));
      await ingest(events.slice(0, 40));
      await refresh();
      await ingest(events.slice(40));
      const instant = fc.integer({ min: start - 3_600_000, max: end + 3_600_000 });
      await fc.assert(
        fc.asyncProperty(instant, instant, instant, async (x, y, z) => {
          const [a, b, cut] = [x, y, z].sort((p, q) => p - q).map((ms) => new Date(ms)) as [Date, Date, Date];
          const totals = await rangeTotals(db, { from: a, to: cut, customer: c });
          const { rows } = await db.query<{ meter: string; s: string; n: string; mx: string; mn: string; l: string }>(
            `SELECT meter, trim_scale(sum(value))::text AS s, count(*)::text AS n, trim_scale(max(value))::text AS mx,
                  trim_scale(min(value))::text AS mn, trim_scale((array_agg(value ORDER BY ts DESC, value DESC))[1])::text AS l
           FROM usage_events WHERE customer_id = $1 AND ts >= $2 AND ts < $3 GROUP BY 1 ORDER BY 1`,
            [c, a, cut],
          );
          expect(totals.map((x) => [x.meter, x.sum, x.count, x.max, x.min, x.avg, x.last])).toEqual(
            rows.map((r) => [r.meter, r.s, r.n, r.mx, r.mn, average(r.s, r.n), r.l]),
          );
          // segments add up to the whole for sum and count
          const left = await rangeTotals(db, { from: a, to: b, customer: c });
          const right = await rangeTotals(db, { from: b, to: cut, customer: c });
          for (const whole of totals) {
            const parts = [...left, ...right].filter((p) => p.meter === whole.meter);
            expect(parts.reduce((acc, p) => acc + Number(p.count), 0)).toBe(Number(whole.count));
            const sum = parts.reduce((acc, p) => acc + BigInt(p.sum), 0n);
            expect(sum.toString()).toBe(whole.sum);
          }
        }),
        { numRuns: 25, endOnFailure: true },
      );
    }));

  it("when the refresh job has run, then the rollups themselves are materialized and no marks remain", () =>
    both(async ({ backend, t, refresh, ingest }) => {
      await ingest([
        { id: "m1", customer: "materialized", meter: "calls", value: 1, timestamp: "2026-10-15T10:00:00Z" },
        { id: "m2", customer: "materialized", meter: "calls", value: 2, timestamp: "2026-11-02T10:00:00Z" },
      ]);
      await refresh();
      const db = t.tally.ctx.db;
      const marks = await db.query<{ n: string }>(
        "SELECT (SELECT count(*) FROM rollup_invalidations) + (SELECT count(*) FROM rollup_claims) AS n",
        [],
      );
      expect(marks.rows[0]?.n).toBe("0");
      const materialized =
        backend === "embedded"
          ? await db.query<{ n: string }>(
              `SELECT count(*) AS n FROM timescaledb_information.continuous_aggregates a,
               LATERAL (SELECT 1 FROM timescaledb_information.chunks c
                        WHERE c.hypertable_name = a.materialization_hypertable_name LIMIT 1) x`,
              [],
            )
          : await db.query<{ n: string }>(
              "SELECT ((SELECT count(*) > 0 FROM usage_hourly_mat)::int + (SELECT count(*) > 0 FROM usage_daily_mat)::int + (SELECT count(*) > 0 FROM usage_monthly_mat)::int) AS n",
              [],
            );
      expect(Number(materialized.rows[0]?.n)).toBe(3);
    }));
});
