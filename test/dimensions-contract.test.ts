// The dimensions contract: rollups are kept per (bucket, customer, meter, dimension set) on both engines, and every
// answer — ungrouped, grouped, filtered — equals the same question asked of raw events, through random events with
// random dimensions, late events and refreshes in between; the two engines answer identically.
import { Decimal as Decimal20 } from "decimal.js";
import fc from "fast-check";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../src/clock.js";
import { BACKENDS, type TestBackend } from "./helpers/databases.js";
import { postJson } from "./helpers/events.js";
import { admin, startTestTally, type TestTally } from "./helpers/tally.js";

const Decimal = Decimal20.clone({ precision: 60 });

/** An average as Tally figures it: sum ÷ count, rounded half away from zero to 9 places, trailing zeros trimmed. */
const average = (sum: string, count: string) =>
  new Decimal(sum).div(count).toDecimalPlaces(9, Decimal.ROUND_HALF_UP).toFixed();

const NOW = "2026-11-03T12:30:00Z";
const observed: Record<TestBackend, Record<string, unknown>> = { embedded: {}, postgres: {} };

type Point = { start: string; end: string; value: string; count: number; dimensions?: Record<string, string | null> };

describe.each(BACKENDS)("dimensions contract on %s", (backend) => {
  let t: TestTally;
  const usage = async (q: Record<string, string | string[]>) => {
    const res = await request(t.tally.app).get("/v1/usage").query(q).set(admin);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return res.body.data as Point[];
  };
  const refresh = async () => {
    const res = await request(t.tally.app).post("/v1/jobs/refresh-rollups/run").set(admin);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
  };
  const ingest = async (events: object[]) => {
    const res = await postJson(t.tally, events);
    expect(res.status, JSON.stringify(res.body)).toBe(202);
  };
  const record = (name: string, value: unknown) => {
    observed[backend][name] = value;
    return value;
  };

  beforeAll(async () => {
    t = await startTestTally(backend, { clock: new ManualClock(NOW) });
    for (const [key, aggregation] of [
      ["tok", "sum"],
      ["req", "count"],
      ["mem", "max"],
      ["ver", "last"],
      ["low", "min"],
      ["avg", "avg"],
      ["who", "unique_count"],
    ]) {
      const unique = aggregation === "unique_count" ? { unique_property: "user" } : {};
      const res = await request(t.tally.app)
        .put(`/v1/meters/${key}`)
        .set(admin)
        .send({ name: key, unit: "u", aggregation, dimensions: ["model", "kind"], ...unique });
      expect(res.status).toBe(201);
    }
  });
  afterAll(() => t.close());

  it("when events of several combinations land in one hour, then the rollups keep a row per combination and ungrouped answers are their aggregation", async () => {
    const c = "rows";
    await ingest([
      {
        id: "1",
        customer: c,
        meter: "tok",
        value: 120,
        timestamp: "2026-10-20T10:05:00Z",
        properties: { model: "a", kind: "in" },
      },
      {
        id: "2",
        customer: c,
        meter: "tok",
        value: 50,
        timestamp: "2026-10-20T10:06:00Z",
        properties: { model: "a", kind: "out" },
      },
      {
        id: "3",
        customer: c,
        meter: "tok",
        value: 1000,
        timestamp: "2026-10-20T10:07:00Z",
        properties: { model: "b", kind: "in" },
      },
      { id: "4", customer: c, meter: "tok", value: 7, timestamp: "2026-10-20T10:08:00Z" },
      {
        id: "5",
        customer: c,
        meter: "tok",
        value: 3,
        timestamp: "2026-10-20T10:09:00Z",
        properties: { model: "a", kind: "in" },
      },
      { id: "6", customer: c, meter: "ver", value: 5, timestamp: "2026-10-20T10:09:00Z", properties: { model: "a" } },
      { id: "7", customer: c, meter: "ver", value: 4, timestamp: "2026-10-20T10:10:00Z", properties: { model: "b" } },
      { id: "8", customer: c, meter: "ver", value: 9, timestamp: "2026-10-20T10:01:00Z" },
    ]);
    for (const phase of ["fresh", "refreshed"]) {
      if (phase === "refreshed") await refresh();
      for (const granularity of ["hour", "day", "month"]) {
        const [from, to] =
          granularity === "month"
            ? ["2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z"]
            : ["2026-10-20T00:00:00Z", "2026-10-21T00:00:00Z"];
        const tok = await usage({ customer: c, meter: "tok", granularity, from, to });
        expect(
          record(
            `rows.${granularity}.tok.${phase}`,
            tok.map((p) => [p.value, p.count]),
          ),
        ).toEqual([["1180", 5]]);
        const ver = await usage({ customer: c, meter: "ver", granularity, from, to });
        expect(
          record(
            `rows.${granularity}.ver.${phase}`,
            ver.map((p) => [p.value, p.count]),
          ),
        ).toEqual([["4", 3]]);
      }
    }
    const { rows } = await t.tally.ctx.db.query<{ level: string; n: string }>(
      `SELECT 'hour' AS level, count(*)::text AS n FROM usage_hourly_mat WHERE customer_id = $1 AND meter = 'tok'
       UNION ALL SELECT 'day', count(*)::text FROM usage_daily_mat WHERE customer_id = $1 AND meter = 'tok'
       UNION ALL SELECT 'month', count(*)::text FROM usage_monthly_mat WHERE customer_id = $1 AND meter = 'tok'`,
      [c],
    );
    // Four combinations (a/in, a/out, b/in, none) at every level.
    expect(Object.fromEntries(rows.map((r) => [r.level, r.n]))).toEqual({ hour: "4", day: "4", month: "4" });
  });

  it("when usage is grouped and filtered, then rows carry their values, ordered by start then values, null last", async () => {
    const c = "grouped";
    const at = (h: number) => `2026-10-21T${String(h).padStart(2, "0")}:15:00Z`;
    await ingest([
      { id: "1", customer: c, meter: "tok", value: 120, timestamp: at(1), properties: { model: "gpt-4o", kind: "in" } },
      { id: "2", customer: c, meter: "tok", value: 50, timestamp: at(1), properties: { model: "gpt-4o", kind: "out" } },
      { id: "3", customer: c, meter: "tok", value: 1000, timestamp: at(2), properties: { model: "mini", kind: "in" } },
      { id: "4", customer: c, meter: "tok", value: 7, timestamp: at(2) },
      { id: "5", customer: c, meter: "tok", value: 3, timestamp: at(1), properties: { model: "Zeta", kind: "in" } },
    ]);
    const day = {
      customer: c,
      meter: "tok",
      granularity: "day",
      from: "2026-10-21T00:00:00Z",
      to: "2026-10-22T00:00:00Z",
    };
    for (const phase of ["fresh", "refreshed"]) {
      if (phase === "refreshed") await refresh();
      const byModel = await usage({ ...day, group_by: "model" });
      expect(
        record(
          `grouped.model.${phase}`,
          byModel.map((p) => [p.dimensions, p.value, p.count]),
        ),
      ).toEqual([
        [{ model: "Zeta" }, "3", 1],
        [{ model: "gpt-4o" }, "170", 2],
        [{ model: "mini" }, "1000", 1],
        [{ model: null }, "7", 1],
      ]);
      const both = await usage({
        ...day,
        granularity: "hour",
        group_by: "kind,model",
        "filter[model]": ["gpt-4o", ""],
      });
      expect(
        record(
          `grouped.both.${phase}`,
          both.map((p) => [p.start, p.dimensions, p.value]),
        ),
      ).toEqual([
        ["2026-10-21T01:00:00Z", { kind: "in", model: "gpt-4o" }, "120"],
        ["2026-10-21T01:00:00Z", { kind: "out", model: "gpt-4o" }, "50"],
        ["2026-10-21T02:00:00Z", { kind: null, model: null }, "7"],
      ]);
      const filtered = await usage({ ...day, "filter[kind]": "in", "filter[model]": ["mini", "Zeta"] });
      expect(filtered.map((p) => [p.value, p.count, p.dimensions])).toEqual([["1003", 2, undefined]]);
      const none = await usage({ ...day, "filter[model]": "nope" });
      expect(none).toEqual([]);
    }
  });

  it("when group_by or filter names something that is not a dimension, then 400 naming the field", async () => {
    const q = {
      customer: "grouped",
      meter: "tok",
      granularity: "day",
      from: "2026-10-21T00:00:00Z",
      to: "2026-10-22T00:00:00Z",
    };
    for (const [extra, field] of [
      [{ group_by: "model,region" }, "group_by"],
      [{ group_by: "model,model" }, "group_by"],
      [{ "filter[region]": "eu" }, "filter[region]"],
    ] as const) {
      const res = await request(t.tally.app)
        .get("/v1/usage")
        .query({ ...q, ...extra })
        .set(admin);
      expect(res.status, JSON.stringify(res.body)).toBe(400);
      expect(res.body.errors.map((e: { field: string }) => e.field)).toContain(field);
    }
  });

  it("when usage is exported grouped, then a dimensions column is added; without group_by the header is today's", async () => {
    const q = { customer: "grouped", granularity: "day", from: "2026-10-21T00:00:00Z", to: "2026-10-22T00:00:00Z" };
    const plain = await request(t.tally.app).get("/v1/usage/export").query(q).set(admin);
    expect(plain.status).toBe(200);
    expect(plain.text.split("\n")[0]).toBe("start,end,customer,meter,value,count");
    expect(plain.text).toContain("grouped,tok,1180,5");
    const grouped = await request(t.tally.app)
      .get("/v1/usage/export")
      .query({ ...q, meter: "tok", group_by: "model", "filter[kind]": "in" })
      .set(admin);
    expect(grouped.status, grouped.text).toBe(200);
    expect(record("export.grouped", grouped.text.trim().split("\n"))).toEqual([
      "start,end,customer,meter,value,count,dimensions",
      '2026-10-21T00:00:00Z,2026-10-22T00:00:00Z,grouped,tok,3,1,"{""model"" : ""Zeta""}"',
      '2026-10-21T00:00:00Z,2026-10-22T00:00:00Z,grouped,tok,120,1,"{""model"" : ""gpt-4o""}"',
      '2026-10-21T00:00:00Z,2026-10-22T00:00:00Z,grouped,tok,1000,1,"{""model"" : ""mini""}"',
    ]);
  });

  it("property: for random events with random dimensions, late events and refreshes, grouped and filtered series equal raw events", async () => {
    const db = t.tally.ctx.db;
    const start = Date.parse("2026-09-29T13:00:00Z");
    const span = Date.parse(NOW) - start;
    const meters = {
      tok: "sum",
      req: "count",
      mem: "max",
      ver: "last",
      low: "min",
      avg: "avg",
      who: "unique",
    } as const;
    const event = fc.record({
      at: fc.integer({ min: 0, max: span }),
      meter: fc.constantFrom("tok", "req", "mem", "ver", "low", "avg", "who"),
      user: fc.constantFrom("u1", "u2", "u3", "u4"),
      value: fc.oneof(fc.integer({ min: 0, max: 1000 }).map(String), fc.constantFrom("0.5", "2.25")),
      model: fc.constantFrom("a", "b", "B", undefined),
      kind: fc.constantFrom("in", "out", undefined),
    });
    const question = fc.record({
      range: fc.constantFrom(
        ["hour", "2026-10-20T00:00:00Z", "2026-11-04T00:00:00Z"],
        ["day", "2026-09-01T00:00:00Z", "2026-11-04T00:00:00Z"],
        ["month", "2026-09-01T00:00:00Z", "2026-12-01T00:00:00Z"],
      ),
      meter: fc.constantFrom("tok", "req", "mem", "ver", "low", "avg", "who"),
      groupBy: fc.constantFrom([], ["model"], ["kind"], ["model", "kind"], ["kind", "model"]),
      filter: fc.constantFrom(
        {},
        { model: ["a"] },
        { model: ["b", ""] },
        { kind: ["in"], model: ["B", "a"] },
        { kind: [""] },
      ),
    });
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(event, { minLength: 1, maxLength: 10 }), { minLength: 1, maxLength: 3 }),
        fc.array(fc.boolean(), { minLength: 3, maxLength: 3 }),
        fc.array(question, { minLength: 3, maxLength: 3 }),
        async (batches, refreshAfter, questions) => {
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
                properties: {
                  user: e.user,
                  ...(e.model ? { model: e.model } : {}),
                  ...(e.kind ? { kind: e.kind } : {}),
                },
              })),
            );
            if (refreshAfter[i]) await refresh();
          }
          for (const { range, meter, groupBy, filter } of questions) {
            const [g, from, to] = range as unknown as [string, string, string];
            const params: unknown[] = [c, meter, new Date(from), new Date(to), g];
            const bind = (v: unknown) => {
              params.push(v);
              return `$${params.length}`;
            };
            // Keys are the test's own constants ("model", "kind"): inlined, so SELECT and GROUP BY are one expression.
            const conds = Object.entries(filter as Record<string, string[]>).map(([k, vals]) => {
              const present = vals.filter((v) => v !== "");
              return `((properties ->> '${k}') = ANY (${bind(present)}::text[])${vals.includes("") ? ` OR properties ->> '${k}' IS NULL` : ""})`;
            });
            const gs = groupBy.map((k) => `(properties ->> '${k}')`);
            const { rows } = await db.query<{
              start: Date;
              s: string;
              n: string;
              mx: string;
              mn: string;
              u: string;
              l: string;
            }>(
              `SELECT date_trunc($5, ts, 'UTC') AS start, ${gs.map((x, i) => `${x} AS d${i + 1},`).join(" ")}
                      trim_scale(sum(value))::text AS s, count(*)::text AS n, trim_scale(max(value))::text AS mx,
                      trim_scale(min(value))::text AS mn, count(DISTINCT properties ->> 'user')::text AS u,
                      trim_scale((array_agg(value ORDER BY ts DESC, value DESC))[1])::text AS l
               FROM usage_events WHERE customer_id = $1 AND meter = $2 AND ts >= $3 AND ts < $4
               ${conds.map((x) => `AND ${x}`).join(" ")}
               GROUP BY 1${gs.map((x) => `, ${x}`).join("")}
               ORDER BY 1${gs.map((x) => `, ${x} COLLATE "C" NULLS LAST`).join("")}`,
              params,
            );
            const agg = meters[meter as keyof typeof meters];
            const expected = rows.map((r) => ({
              start: r.start.toISOString().replace(".000Z", "Z"),
              value: {
                sum: r.s,
                count: r.n,
                max: r.mx,
                last: r.l,
                min: r.mn,
                avg: average(r.s, r.n),
                unique: r.u,
              }[agg],
              count: Number(r.n),
              ...(groupBy.length > 0
                ? {
                    dimensions: Object.fromEntries(
                      groupBy.map((k, i) => [k, (r as unknown as Record<string, string | null>)[`d${i + 1}`] ?? null]),
                    ),
                  }
                : {}),
            }));
            const q: Record<string, string | string[]> = { customer: c, meter, granularity: g, from, to };
            if (groupBy.length > 0) q.group_by = groupBy.join(",");
            for (const [k, vals] of Object.entries(filter as Record<string, string[]>)) q[`filter[${k}]`] = vals;
            const got = (await usage(q)).map(({ start, value, count, dimensions }) => ({
              start,
              value,
              count,
              ...(dimensions ? { dimensions } : {}),
            }));
            expect(got, JSON.stringify({ g, meter, groupBy, filter })).toEqual(expected);
          }
        },
      ),
      { numRuns: 20, endOnFailure: true },
    );
  });
});

describe("both engines", () => {
  it("when the same scenarios ran on both, then every answer is identical", () => {
    expect(Object.keys(observed.embedded).length).toBeGreaterThan(5);
    expect(observed.postgres).toEqual(observed.embedded);
  });
});
