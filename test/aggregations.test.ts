// The v1.2 aggregations through the HTTP API on both engines: unique_count (monthly active users: the worked example
// of issue 28, invoice 3 × 1.50 = 4.50), min and avg; the rules of unique_property; and property tests that hold
// every series and total equal to the same figure computed from raw events (count(DISTINCT …), min, sum ÷ count) —
// across refreshes, late events, mid-day bounds and dimension groups.
import { Decimal as Decimal20 } from "decimal.js";
import fc from "fast-check";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../src/clock.js";
import { firstSeenHours } from "../src/rollups/firstSeen.js";
import { refreshRollups } from "../src/rollups/refresh.js";
import { rangeTotals } from "../src/rollups/totals.js";
import { bothEngines } from "./helpers/both.js";
import { BACKENDS } from "./helpers/databases.js";
import { ndjson, postJson, postNdjson } from "./helpers/events.js";
import { hourAt, putCustomer, reconciliation, startStripeRig, sync } from "./helpers/stripe.js";
import { admin, startTestTally, type TestTally } from "./helpers/tally.js";

/** Enough digits for any sum of events divided exactly before rounding. */
const Decimal = Decimal20.clone({ precision: 60 });

const NOW = "2026-11-20T12:30:00Z";
const NOV = ["2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"] as const;

function helpers(backend: (typeof BACKENDS)[number], t: TestTally) {
  const api = () => request(t.tally.app);
  const put = (path: string, body: object) => api().put(path).set(admin).send(body);
  const get = async (path: string, query: Record<string, string> = {}) => {
    const res = await api().get(path).query(query).set(admin);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return res.body;
  };
  const usage = async (customer: string, meter: string, granularity: string, from: string, to: string) =>
    (await get("/v1/usage", { customer, meter, granularity, from, to })).data as {
      start: string;
      value: string;
      count: number;
    }[];
  const ingest = async (events: object[]) => {
    const res = await postJson(t.tally, events);
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    return res.body;
  };
  const refresh = async () => expect((await api().post("/v1/jobs/refresh-rollups/run").set(admin)).status).toBe(200);
  return { backend, t, api, put, get, usage, ingest, refresh };
}

describe("aggregations", { timeout: 240_000 }, () => {
  const engines: ReturnType<typeof helpers>[] = [];
  const both = bothEngines(engines);

  beforeAll(async () => {
    for (const backend of BACKENDS) {
      const t = await startTestTally(backend, { clock: new ManualClock(NOW) });
      const h = helpers(backend, t);
      engines.push(h);
      const meters = {
        active_users: { aggregation: "unique_count", unique_property: "user_id" },
        latency_min: { aggregation: "min" },
        latency_avg: { aggregation: "avg" },
        seen: { aggregation: "unique_count", unique_property: "user", dimensions: ["region"] },
      };
      for (const [key, m] of Object.entries(meters)) {
        const res = await h.put(`/v1/meters/${key}`, { name: key, unit: "unit", ...m });
        expect(res.status, JSON.stringify(res.body)).toBe(201);
      }
      expect((await h.put("/v1/plans/mau", { name: "MAU", currency: "USD" })).status).toBe(201);
      const price = await h
        .api()
        .post("/v1/plans/mau/prices")
        .set(admin)
        .send({ meter: "active_users", effective_from: "2026-01-01T00:00:00Z", model: "per_unit", unit_price: "1.50" });
      expect(price.status, JSON.stringify(price.body)).toBe(201);
    }
  });
  afterAll(async () => {
    for (const e of engines) await e.t.close();
  });

  it("when active users u1, u2, u1 come on Nov 1 and u2, u3 on Nov 2, then the days are 2 and 2, the month 3, the invoice 4.50", () =>
    both(async ({ put, get, usage, ingest, refresh, record }) => {
      const c = "acme";
      expect((await put(`/v1/customers/${c}`, {})).status).toBe(201);
      expect((await put(`/v1/customers/${c}/subscription`, { plan: "mau", start: NOV[0] })).status).toBe(200);
      await ingest([
        {
          id: "1",
          customer: c,
          meter: "active_users",
          timestamp: "2026-11-01T09:00:00Z",
          properties: { user_id: "u1" },
        },
        {
          id: "2",
          customer: c,
          meter: "active_users",
          timestamp: "2026-11-01T10:00:00Z",
          properties: { user_id: "u2" },
        },
        {
          id: "3",
          customer: c,
          meter: "active_users",
          timestamp: "2026-11-01T11:00:00Z",
          properties: { user_id: "u1" },
        },
        {
          id: "4",
          customer: c,
          meter: "active_users",
          timestamp: "2026-11-02T09:00:00Z",
          properties: { user_id: "u2" },
        },
        {
          id: "5",
          customer: c,
          meter: "active_users",
          timestamp: "2026-11-02T10:00:00Z",
          properties: { user_id: "u3" },
        },
      ]);
      for (const phase of ["fresh", "refreshed"]) {
        if (phase === "refreshed") await refresh();
        const days = await usage(c, "active_users", "day", NOV[0], "2026-11-03T00:00:00Z");
        expect(record(`days.${phase}`, days)).toEqual([
          { start: "2026-11-01T00:00:00Z", end: "2026-11-02T00:00:00Z", value: "2", count: 3 },
          { start: "2026-11-02T00:00:00Z", end: "2026-11-03T00:00:00Z", value: "2", count: 2 },
        ]);
        expect(record(`month.${phase}`, await usage(c, "active_users", "month", ...NOV))).toEqual([
          { start: NOV[0], end: NOV[1], value: "3", count: 5 },
        ]);
        const hours = await usage(c, "active_users", "hour", NOV[0], "2026-11-02T00:00:00Z");
        expect(hours.map((p) => p.value)).toEqual(["1", "1", "1"]);
        const invoice = await get(`/v1/customers/${c}/invoice`, { period: "2026-11" });
        expect(
          record(
            `invoice.${phase}`,
            invoice.lines.map((l: Record<string, unknown>) => [l.quantity, l.amount]),
          ),
        ).toEqual([["3", "4.50"]]);
        expect(invoice.total).toBe("4.50");
        const summary = await get(`/v1/customers/${c}/summary`, { period: "2026-11" });
        expect(summary.meters).toEqual([{ meter: "active_users", quantity: "3", amount: "4.50" }]);
        expect(summary.total).toBe("4.50");
      }
    }));

  it("when latency values are 5, 3 and 10, then min is 3 and avg 6 at every level, and averages of groups are never averaged", () =>
    both(async ({ usage, ingest, refresh, record }) => {
      const c = "latency";
      const at = ["2026-11-03T10:00:00Z", "2026-11-03T10:30:00Z", "2026-11-04T08:00:00Z"];
      await ingest(
        ["latency_min", "latency_avg"].flatMap((meter) =>
          [5, 3, 10].map((value, i) => ({ id: `${meter}-${i}`, customer: c, meter, value, timestamp: at[i] })),
        ),
      );
      for (const phase of ["fresh", "refreshed"]) {
        if (phase === "refreshed") await refresh();
        expect(record(`min.${phase}`, await usage(c, "latency_min", "month", ...NOV))).toEqual([
          { start: NOV[0], end: NOV[1], value: "3", count: 3 },
        ]);
        expect(record(`avg.${phase}`, await usage(c, "latency_avg", "month", ...NOV))).toEqual([
          { start: NOV[0], end: NOV[1], value: "6", count: 3 },
        ]);
        // Nov 3 averages 4 over two events, Nov 4 10 over one: the month is 18 / 3 = 6, not (4 + 10) / 2 = 7.
        expect((await usage(c, "latency_avg", "day", NOV[0], NOV[1])).map((p) => p.value)).toEqual(["4", "10"]);
        expect((await usage(c, "latency_min", "hour", NOV[0], NOV[1])).map((p) => p.value)).toEqual(["3", "10"]);
      }
    }));

  it("when an average does not end, then it is rounded half away from zero to 9 decimal places", () =>
    both(async ({ usage, ingest, record }) => {
      const c = "thirds";
      await ingest([
        { id: "1", customer: c, meter: "latency_avg", value: "1", timestamp: "2026-11-05T10:00:00Z" },
        { id: "2", customer: c, meter: "latency_avg", value: "1", timestamp: "2026-11-05T10:00:00Z" },
        { id: "3", customer: c, meter: "latency_avg", value: "0.000000002", timestamp: "2026-11-05T10:00:00Z" },
        { id: "4", customer: c, meter: "latency_avg", value: "999999999999999999", timestamp: "2026-11-06T10:00:00Z" },
      ]);
      const days = await usage(c, "latency_avg", "day", NOV[0], NOV[1]);
      expect(
        record(
          "thirds",
          days.map((p) => p.value),
        ),
      ).toEqual(["0.666666667", "999999999999999999"]);
      const month = await usage(c, "latency_avg", "month", ...NOV);
      // 1000000000000000001.000000002 / 4 = 250000000000000000.2500000005: the half rounds up.
      expect(month[0]?.value).toBe("250000000000000000.250000001");
    }));

  it("when a unique_count meter is defined without unique_property, or another meter with one, then 422 names the field", () =>
    both(async ({ put, record }) => {
      const missing = await put("/v1/meters/mau_bad", { name: "x", unit: "user", aggregation: "unique_count" });
      expect(missing.status).toBe(422);
      expect(record("missing", missing.body)).toMatchObject({
        code: "invalid_unique_property",
        errors: [{ field: "unique_property" }],
      });
      const extra = await put("/v1/meters/sum_bad", {
        name: "x",
        unit: "user",
        aggregation: "sum",
        unique_property: "user_id",
      });
      expect(extra.status).toBe(422);
      expect(extra.body.errors[0].field).toBe("unique_property");
    }));

  it("when an event of a unique_count meter lacks the property, then 422 names its path and nothing is stored", () =>
    both(async ({ t, record }) => {
      const res = await postJson(t.tally, [
        { id: "a", customer: "lacking", meter: "active_users", properties: { user_id: "u1" } },
        { id: "b", customer: "lacking", meter: "active_users", properties: { other: "x" } },
        { id: "c", customer: "lacking", meter: "active_users", properties: { user_id: "x".repeat(257) } },
      ]);
      expect(res.status).toBe(422);
      expect(
        record(
          "lacking",
          res.body.errors.map((e: { field: string }) => e.field),
        ),
      ).toEqual(["events[1].properties.user_id", "events[2].properties.user_id"]);
      const { rows } = await t.tally.ctx.db.query<{ n: string }>(
        "SELECT count(*) AS n FROM usage_events WHERE customer_id = 'lacking'",
        [],
      );
      expect(rows[0]?.n).toBe("0");
    }));

  it("when a user id comes as a number, then it is the same user as its decimal text", () =>
    both(async ({ usage, ingest, record }) => {
      const c = "numeric";
      const at = "2026-11-07T10:00:00Z";
      await ingest([
        { id: "1", customer: c, meter: "active_users", timestamp: at, properties: { user_id: 42 } },
        { id: "2", customer: c, meter: "active_users", timestamp: at, properties: { user_id: "42" } },
        { id: "3", customer: c, meter: "active_users", timestamp: at, properties: { user_id: 42.5, plan: "pro" } },
      ]);
      expect(
        record("numeric", await usage(c, "active_users", "day", "2026-11-07T00:00:00Z", "2026-11-08T00:00:00Z")),
      ).toEqual([{ start: "2026-11-07T00:00:00Z", end: "2026-11-08T00:00:00Z", value: "2", count: 3 }]);
    }));

  it("when a unique_count meter has events, then its unique_property cannot change, nor can another meter become one", () =>
    both(async ({ put, ingest, record }) => {
      await ingest([{ id: "1", customer: "fixed", meter: "latency_min", value: 1 }]);
      const changed = await put("/v1/meters/active_users", {
        name: "active_users",
        unit: "unit",
        aggregation: "unique_count",
        unique_property: "account_id",
      });
      expect(record("changed", changed.status)).toBe(409);
      const became = await put("/v1/meters/latency_min", {
        name: "latency_min",
        unit: "unit",
        aggregation: "unique_count",
        unique_property: "user_id",
      });
      expect(became.status).toBe(409);
      const other = await put("/v1/meters/latency_min", { name: "latency_min", unit: "unit", aggregation: "avg" });
      expect(other.status).toBe(200);
      const back = await put("/v1/meters/latency_min", { name: "latency_min", unit: "unit", aggregation: "min" });
      expect(back.status).toBe(200);
    }));

  it("when events are sent again — the same ids, even with other users — then only stored events count, in JSON and NDJSON", () =>
    both(async ({ t, usage, ingest, record }) => {
      const c = "again";
      const at = "2026-11-08T10:00:00Z";
      const e = (id: string, user: string) => ({
        id,
        customer: c,
        meter: "active_users",
        timestamp: at,
        properties: { user_id: user },
      });
      await ingest([e("1", "u1")]);
      // Id 1 is stored (u9 is a duplicate's user: dropped); id 3 twice in the batch: the first (u3) wins.
      expect(await ingest([e("1", "u9"), e("2", "u2"), e("3", "u3"), e("3", "u8")])).toEqual({
        accepted: 2,
        duplicates: 2,
      });
      const streamed = await postNdjson(t.tally, ndjson([e("4", "u4"), e("2", "u7"), e("5", "u4")]));
      expect(streamed.status, JSON.stringify(streamed.body)).toBe(202);
      expect(streamed.body).toEqual({ accepted: 2, duplicates: 1 });
      const day = ["2026-11-08T00:00:00Z", "2026-11-09T00:00:00Z"] as const;
      expect(record("again", await usage(c, "active_users", "day", ...day))).toEqual([
        { start: day[0], end: day[1], value: "4", count: 5 },
      ]);
      const { rows } = await t.tally.ctx.db.query<{ value: string }>(
        "SELECT value FROM usage_distinct WHERE customer_id = $1 ORDER BY value",
        [c],
      );
      expect(rows.map((r) => r.value)).toEqual(["u1", "u2", "u3", "u4"]);
    }));

  it("when concurrent batches bring the same new users, then each is counted once and no batch fails", () =>
    both(async ({ t, usage, record }) => {
      const c = "concurrent";
      const batches = Array.from({ length: 6 }, (_, b) =>
        Array.from({ length: 40 }, (_, i) => ({
          id: `${b}-${i}`,
          customer: c,
          meter: "active_users",
          timestamp: `2026-11-12T${String((i * 7 + b) % 24).padStart(2, "0")}:00:00Z`,
          properties: { user_id: `u${(i * (b + 1)) % 17}` },
        })),
      );
      const answers = await Promise.all(batches.map((events) => postJson(t.tally, events)));
      expect(answers.map((a) => a.status)).toEqual(batches.map(() => 202));
      const day = await usage(c, "active_users", "day", "2026-11-12T00:00:00Z", "2026-11-13T00:00:00Z");
      const { rows } = await t.tally.ctx.db.query<{ v: string }>(
        "SELECT count(DISTINCT properties ->> 'user_id')::text AS v FROM usage_events WHERE customer_id = $1",
        [c],
      );
      expect(
        record(
          "concurrent",
          day.map((p) => [p.value, p.count]),
        ),
      ).toEqual([[rows[0]?.v, 240]]);
      const firsts = await t.tally.ctx.db.query<{ ok: boolean }>(
        `SELECT bool_and(x.first_ts = (SELECT min(e.ts) FROM usage_events e
                                       WHERE e.customer_id = x.customer_id AND e.properties ->> 'user_id' = x.value)) AS ok
         FROM usage_distinct x WHERE x.customer_id = $1`,
        [c],
      );
      expect(firsts.rows[0]?.ok).toBe(true);
    }));

  it("when a range ends mid-day, then the day's users first seen before its end count, late earlier events included", () =>
    both(async ({ t, ingest, refresh, record }) => {
      const c = "midday";
      const e = (id: string, user: string, timestamp: string) => ({
        id,
        customer: c,
        meter: "active_users",
        timestamp,
        properties: { user_id: user },
      });
      await ingest([e("1", "u1", "2026-11-09T10:00:00Z"), e("2", "u1", "2026-11-09T20:00:00Z")]);
      await ingest([e("3", "u2", "2026-11-09T15:00:00Z")]);
      const users = async (to: string, from = "2026-11-09T00:00:00Z") =>
        (
          await rangeTotals(t.tally.ctx.db, {
            from: new Date(from),
            to: new Date(to),
            customer: c,
            meter: "active_users",
          })
        )[0]?.unique ?? "0";
      expect(record("noon", await users("2026-11-09T12:00:00Z"))).toBe("1");
      expect(await users("2026-11-09T16:00:00Z")).toBe("2");
      expect(await users("2026-11-09T10:00:00Z")).toBe("0");
      // From mid-day on: raw events of the day's rest.
      expect(await users("2026-11-10T00:00:00Z", "2026-11-09T16:00:00Z")).toBe("1");
      await refresh();
      // u2 was also there at 09:00, sent late: its first instant that day moves earlier.
      await ingest([e("4", "u2", "2026-11-09T09:00:00Z")]);
      expect(record("noon-late", await users("2026-11-09T12:00:00Z"))).toBe("2");
      const { rows } = await t.tally.ctx.db.query<{ first_ts: Date }>(
        "SELECT first_ts FROM usage_distinct WHERE customer_id = $1 AND value = 'u2'",
        [c],
      );
      expect(rows.map((r) => r.first_ts.toISOString())).toEqual(["2026-11-09T09:00:00.000Z"]);
    }));

  it("when distinct counts are filtered and grouped by a dimension or exported, then each is counted over its own events", () =>
    both(async ({ api, get, ingest, record }) => {
      const c = "regions";
      const at = "2026-11-10T10:00:00Z";
      const e = (id: string, user: string, region?: string) => ({
        id,
        customer: c,
        meter: "seen",
        timestamp: at,
        properties: { user, ...(region ? { region } : {}) },
      });
      await ingest([e("1", "a", "eu"), e("2", "b", "eu"), e("3", "a", "us"), e("4", "c"), e("5", "a", "eu")]);
      const q = { customer: c, meter: "seen", granularity: "month", from: NOV[0], to: NOV[1] };
      expect((await get("/v1/usage", q)).data.map((p: { value: string }) => p.value)).toEqual(["3"]);
      const grouped = await get("/v1/usage", { ...q, group_by: "region" });
      expect(
        record(
          "grouped",
          grouped.data.map((p: { dimensions: object; value: string; count: number }) => [
            p.dimensions,
            p.value,
            p.count,
          ]),
        ),
      ).toEqual([
        [{ region: "eu" }, "2", 3],
        [{ region: "us" }, "1", 1],
        [{ region: null }, "1", 1],
      ]);
      const filtered = await api()
        .get("/v1/usage")
        .query({ ...q, "filter[region]": ["eu", "us"] })
        .set(admin);
      expect(filtered.body.data.map((p: { value: string }) => p.value)).toEqual(["2"]);
      const csv = await api()
        .get("/v1/usage/export")
        .query({ customer: c, granularity: "day", from: "2026-11-10T00:00:00Z", to: "2026-11-11T00:00:00Z" })
        .set(admin);
      expect(csv.status).toBe(200);
      expect(record("csv", csv.text.trim().split("\n"))).toEqual([
        "start,end,customer,meter,value,count",
        "2026-11-10T00:00:00Z,2026-11-11T00:00:00Z,regions,seen,3,5",
      ]);
    }));

  it("when events were loaded around ingest (COPY into usage_events), then a full refresh builds their distinct values", () =>
    both(async ({ t, usage, record }) => {
      const { db, engine } = t.tally.ctx;
      await db.query(
        `INSERT INTO usage_events (ts, customer_id, meter, value, event_id, properties, received_at)
         SELECT '2026-11-11T00:00:00Z'::timestamptz + g * interval '7 minutes', 'bulk', 'active_users', 1, 'b' || g,
                jsonb_build_object('user_id', 'u' || (g % 13)), now()
         FROM generate_series(1, 400) g`,
        [],
      );
      await refreshRollups(db, engine, new Date(NOW), { full: true });
      const days = await usage("bulk", "active_users", "day", "2026-11-11T00:00:00Z", "2026-11-14T00:00:00Z");
      const { rows } = await db.query<{ v: string }>(
        `SELECT count(DISTINCT properties ->> 'user_id')::text AS v FROM usage_events
         WHERE customer_id = 'bulk' GROUP BY date_trunc('day', ts, 'UTC') ORDER BY 1`,
        [],
      );
      expect(
        record(
          "bulk",
          days.map((p) => p.value),
        ),
      ).toEqual(rows.map((r) => r.v));
      expect(days.map((p) => p.count)).toEqual([205, 195]);
    }));

  it("property: distinct counts, min and avg of random events equal raw SQL for series and any range, after late events", () =>
    both(async ({ backend, t, usage, ingest, refresh }) => {
      const db = t.tally.ctx.db;
      const start = Date.parse("2026-10-20T13:00:00Z");
      const span = Date.parse(NOW) - start;
      const event = fc.record({
        at: fc.integer({ min: 0, max: span }),
        user: fc.constantFrom("u1", "u2", "u3", "u4", "u5", "ü6"),
        region: fc.constantFrom("eu", "us", undefined),
        value: fc.oneof(fc.integer({ min: 0, max: 1000 }).map(String), fc.constantFrom("0.5", "7.000000001")),
      });
      let run = 0;
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.array(event, { minLength: 1, maxLength: 15 }), { minLength: 1, maxLength: 3 }),
          fc.array(fc.boolean(), { minLength: 3, maxLength: 3 }),
          fc.array(
            fc.tuple(fc.integer({ min: -3_600_000, max: span + 3_600_000 }), fc.integer({ min: 0, max: span })),
            {
              minLength: 3,
              maxLength: 3,
            },
          ),
          async (batches, refreshAfter, ranges) => {
            const c = `prop-${backend}-${++run}`;
            let n = 0;
            for (const [i, batch] of batches.entries()) {
              await ingest(
                batch.flatMap((e) => {
                  const timestamp = new Date(start + e.at).toISOString();
                  const region = e.region ? { region: e.region } : {};
                  return [
                    { id: String(n++), customer: c, meter: "seen", timestamp, properties: { user: e.user, ...region } },
                    { id: String(n++), customer: c, meter: "latency_avg", value: e.value, timestamp },
                    { id: String(n++), customer: c, meter: "latency_min", value: e.value, timestamp },
                  ];
                }),
              );
              if (refreshAfter[i]) await refresh();
            }
            for (const g of ["hour", "day", "month"] as const) {
              const ranges: Record<typeof g, [string, string]> = {
                hour: ["2026-10-21T00:00:00Z", "2026-11-21T00:00:00Z"],
                day: ["2026-10-20T00:00:00Z", "2026-11-21T00:00:00Z"],
                month: ["2026-10-01T00:00:00Z", NOV[1]],
              };
              const [from, to] = ranges[g];
              const expected = await rawSeries(db, c, g, from, to);
              for (const meter of ["seen", "latency_avg", "latency_min"]) {
                const got = (await usage(c, meter, g, from, to)).map((p) => `${p.start} ${p.value} ${p.count}`);
                expect(got, `${g} ${meter}`).toEqual(expected.filter((r) => r.meter === meter).map((r) => r.line));
              }
            }
            for (const [offset, length] of ranges) {
              const from = new Date(start + offset);
              const to = new Date(from.getTime() + length);
              const totals = await rangeTotals(db, { from, to, customer: c });
              const got = totals.map((x) => [
                x.meter,
                x.meter === "seen" ? x.unique : x.meter === "latency_min" ? x.min : x.avg,
                x.count,
              ]);
              const expected = await rawTotals(db, c, from, to);
              expect(got, `${from.toISOString()}..${to.toISOString()}`).toEqual(expected);
              const grouped = await rangeTotals(db, { from, to, customer: c, meter: "seen", groupBy: ["region"] });
              expect(grouped.map((x) => [x.dimensionValues?.[0] ?? null, x.unique, x.count])).toEqual(
                await rawGroups(db, c, from, to),
              );
              // The running count at the end of each hour with new users is the count over [from, that end).
              let running = 0;
              for (const f of await firstSeenHours(db, { customer: c, meter: "seen", from, to })) {
                running += f.added;
                const end = new Date(Math.min(f.hour.getTime() + 3_600_000, to.getTime()));
                const raw = await rawTotals(db, c, from, end);
                expect(running, `first seen by ${end.toISOString()}`).toBe(
                  Number(raw.find((r) => r[0] === "seen")?.[1]),
                );
              }
              const perRegion = new Map<string | null, number>();
              for (const f of await firstSeenHours(db, { customer: c, meter: "seen", from, to, groupBy: ["region"] })) {
                const region = f.dimensionValues?.[0] ?? null;
                perRegion.set(region, (perRegion.get(region) ?? 0) + f.added);
              }
              expect([...perRegion].map(([r, n]) => [r, String(n)]).sort()).toEqual(
                (await rawGroups(db, c, from, to)).map((g) => [g[0], g[1]]).sort(),
              );
            }
          },
        ),
        { numRuns: 25, endOnFailure: true },
      );
    }));
});

type Db = TestTally["tally"]["ctx"]["db"];

/** sum ÷ count rounded half away from zero to 9 places, as decimal text without trailing zeros. */
function average(sum: string, count: string): string {
  const q = new Decimal(sum).div(count).toDecimalPlaces(9, Decimal.ROUND_HALF_UP);
  return q.isZero() ? "0" : q.toFixed();
}

/** Figures per bucket from raw events, as "start value count" lines per meter. */
async function rawSeries(db: Db, c: string, g: string, from: string, to: string) {
  const { rows } = await db.query<{ b: Date; meter: string; u: string; mn: string; s: string; n: string }>(
    `SELECT date_trunc('${g}', ts, 'UTC') AS b, meter, count(DISTINCT properties ->> 'user')::text AS u,
            trim_scale(min(value))::text AS mn, sum(value)::text AS s, count(*)::text AS n
     FROM usage_events WHERE customer_id = $1 AND ts >= $2 AND ts < $3 GROUP BY 1, 2 ORDER BY 2, 1`,
    [c, new Date(from), new Date(to)],
  );
  return rows.map((r) => {
    const value = r.meter === "seen" ? r.u : r.meter === "latency_min" ? r.mn : average(r.s, r.n);
    return { meter: r.meter, line: `${r.b.toISOString().replace(".000Z", "Z")} ${value} ${Number(r.n)}` };
  });
}

async function rawTotals(db: Db, c: string, from: Date, to: Date) {
  const { rows } = await db.query<{ meter: string; u: string; mn: string; s: string; n: string }>(
    `SELECT meter, count(DISTINCT properties ->> 'user')::text AS u, trim_scale(min(value))::text AS mn,
            sum(value)::text AS s, count(*)::text AS n
     FROM usage_events WHERE customer_id = $1 AND ts >= $2 AND ts < $3 GROUP BY 1 ORDER BY 1`,
    [c, from, to],
  );
  return rows.map((r) => [
    r.meter,
    r.meter === "seen" ? r.u : r.meter === "latency_min" ? r.mn : average(r.s, r.n),
    r.n,
  ]);
}

async function rawGroups(db: Db, c: string, from: Date, to: Date) {
  const { rows } = await db.query<{ region: string | null; u: string; n: string }>(
    `SELECT properties ->> 'region' AS region, count(DISTINCT properties ->> 'user')::text AS u, count(*)::text AS n
     FROM usage_events WHERE customer_id = $1 AND meter = 'seen' AND ts >= $2 AND ts < $3
     GROUP BY 1 ORDER BY (properties ->> 'region') COLLATE "C" NULLS LAST`,
    [c, from, to],
  );
  return rows.map((r) => [r.region, r.u, r.n]);
}

describe.each(BACKENDS)("Stripe sync of unique_count, min and avg meters on %s", (backend) => {
  it("when users come over several hours, then the month's running distinct count is sent, like a max meter's", async () => {
    const clock = new ManualClock(NOW);
    const rig = await startStripeRig(backend, clock);
    try {
      const api = () => request(rig.t.tally.app);
      const meters = {
        mau: { aggregation: "unique_count", unique_property: "user_id", stripe_event_name: "mau_last" },
        low: { aggregation: "min", stripe_event_name: "low_last" },
        mean: { aggregation: "avg", stripe_event_name: "mean_last" },
      };
      for (const [key, m] of Object.entries(meters)) {
        const res = await api()
          .put(`/v1/meters/${key}`)
          .set(admin)
          .send({ name: key, unit: "unit", ...m });
        expect(res.status, JSON.stringify(res.body)).toBe(201);
      }
      await putCustomer(rig.t, "st", "cus_st");
      const user = (id: string, u: string, ago: number) => ({
        id,
        customer: "st",
        meter: "mau",
        timestamp: hourAt(clock, ago),
        properties: { user_id: u },
      });
      const values = [5, 3, 10].flatMap((value, i) => [
        { id: `l${i}`, customer: "st", meter: "low", value, timestamp: hourAt(clock, 3 - i) },
        { id: `m${i}`, customer: "st", meter: "mean", value, timestamp: hourAt(clock, 3 - i) },
      ]);
      const res = await postJson(rig.t.tally, [user("1", "u1", 5), user("2", "u2", 4), user("3", "u1", 3), ...values]);
      expect(res.status, JSON.stringify(res.body)).toBe(202);
      await sync(rig.t);
      const november = { from: new Date(NOV[0]), to: new Date(NOV[1]) };
      expect(rig.fake.last("cus_st", "mau_last", november)).toBe(2n);
      expect(rig.fake.last("cus_st", "low_last", november)).toBe(3n);
      expect(rig.fake.last("cus_st", "mean_last", november)).toBe(6n);
      clock.advance(3_600_000);
      // A returning user adds nothing; a new one makes the running value 3.
      await postJson(rig.t.tally, [user("4", "u2", 1), user("5", "u3", 1)]);
      await sync(rig.t);
      expect(rig.fake.eventsOf("cus_st", "mau_last", november).map((e) => e.value)).toEqual([2n, 3n]);
      const recon = await reconciliation(rig.t, "2026-11");
      expect(recon.map((r) => [r.meter, r.quantity, r.sent, r.status])).toEqual([
        ["low", "3", "3", "in_sync"],
        ["mau", "3", "3", "in_sync"],
        ["mean", "6", "6", "in_sync"],
      ]);
    } finally {
      await rig.close();
    }
  });
});
