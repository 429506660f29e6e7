// Plans, price versions, subscriptions, summaries and invoice previews over HTTP, on both engines, with real
// events: quantities per segment come from rollups and raw events, and both engines give the same invoices.
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../src/clock.js";
import { bothEngines } from "./helpers/both.js";
import { BACKENDS, type TestBackend } from "./helpers/databases.js";
import { defineMeters, postJson } from "./helpers/events.js";
import { admin, bearer, startTestTally, type TestTally } from "./helpers/tally.js";

const NOW = "2026-11-20T12:30:00Z";

const WORKED_TIERS = [
  { up_to: "10000", unit_price: "0", flat_price: "0" },
  { up_to: "100000", unit_price: "0.001" },
  { up_to: null, unit_price: "0.0005" },
];

function helpers(backend: TestBackend, t: TestTally) {
  const api = () => request(t.tally.app);
  const put = (path: string, body: object) => api().put(path).set(admin).send(body);
  const post = (path: string, body: object) => api().post(path).set(admin).send(body);
  const ingest = async (events: object[]) => {
    const res = await postJson(t.tally, events);
    expect(res.status, JSON.stringify(res.body)).toBe(202);
  };
  const customer = async (id: string) =>
    expect((await put(`/v1/customers/${encodeURIComponent(id)}`, {})).status).toBe(201);
  const subscribe = async (id: string, plan: string, start: string) => {
    const res = await put(`/v1/customers/${encodeURIComponent(id)}/subscription`, { plan, start });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return res.body;
  };
  const price = async (plan: string, body: object) => {
    const res = await post(`/v1/plans/${plan}/prices`, body);
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    return res.body;
  };
  const invoice = async (id: string, period = "2026-11") => {
    const res = await api()
      .get(`/v1/customers/${encodeURIComponent(id)}/invoice`)
      .query({ period })
      .set(admin);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return res.body;
  };
  const summary = async (id: string, query: Record<string, string> = {}) => {
    const res = await api()
      .get(`/v1/customers/${encodeURIComponent(id)}/summary`)
      .query(query)
      .set(admin);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return res.body;
  };
  return { backend, t, api, put, post, ingest, customer, subscribe, price, invoice, summary };
}

// Each test runs its scenario on both engines, one after the other, and compares the invoices and summaries each
// recorded (as_of aside).
describe("pricing", { timeout: 180_000 }, () => {
  const engines: ReturnType<typeof helpers>[] = [];
  const both = bothEngines(engines, { omit: ["as_of"] });

  beforeAll(async () => {
    for (const backend of BACKENDS) {
      const t = await startTestTally(backend, { clock: new ManualClock(NOW) });
      const h = helpers(backend, t);
      engines.push(h);
      const { put, price } = h;
      await defineMeters(t.tally, { api_calls: "sum", requests: "count", storage_gb: "max", seats: "last" });
      expect((await put("/v1/plans/worked", { name: "Worked example", currency: "USD" })).status).toBe(201);
      await price("worked", {
        meter: "api_calls",
        effective_from: "2026-01-01T00:00:00Z",
        model: "graduated",
        tiers: WORKED_TIERS,
        base_fee: "99",
      });
    }
  });
  afterAll(async () => {
    for (const e of engines) await e.t.close();
  });

  describe("setup", () => {
    it("when a plan is put twice, then 201 then 200, and GET shows its prices by meter", () =>
      both(async ({ api, put }) => {
        expect((await put("/v1/plans/basic", { name: "Basic", currency: "eur" })).status).toBe(201);
        const again = await put("/v1/plans/basic", { name: "Basic plan", currency: "EUR" });
        expect(again.status).toBe(200);
        expect(again.body).toMatchObject({ key: "basic", name: "Basic plan", currency: "EUR", prices: [] });
        const res = await api().get("/v1/plans/worked").set(admin);
        expect(res.status).toBe(200);
        expect(res.body.prices).toEqual([
          {
            meter: "api_calls",
            versions: [
              expect.objectContaining({
                effective_from: "2026-01-01T00:00:00Z",
                model: "graduated",
                tiers: [
                  { up_to: "10000", unit_price: "0", flat_price: "0" },
                  { up_to: "100000", unit_price: "0.001", flat_price: "0" },
                  { up_to: null, unit_price: "0.0005", flat_price: "0" },
                ],
                base_fee: "99",
              }),
            ],
          },
        ]);
        expect((await api().get("/v1/plans/nope").set(admin)).status).toBe(404);
      }));

    it("when a version with the same effective_from is posted again, then 409", () =>
      both(async ({ post }) => {
        const res = await post("/v1/plans/worked/prices", {
          meter: "api_calls",
          effective_from: "2026-01-01T00:00:00+00:00",
          model: "per_unit",
          unit_price: "1",
        });
        expect(res.status).toBe(409);
        expect(res.body.code).toBe("version_exists");
      }));

    it.each([
      [
        "tiers not ascending",
        {
          tiers: [
            { up_to: "10", unit_price: "1" },
            { up_to: "5", unit_price: "1" },
            { up_to: null, unit_price: "1" },
          ],
        },
        "tiers[1].up_to",
      ],
      ["last up_to not null", { tiers: [{ up_to: "10", unit_price: "1" }] }, "tiers[0].up_to"],
      ["a negative price", { tiers: [{ up_to: null, unit_price: "-0.01" }] }, "tiers[0].unit_price"],
      ["a missing field", { tiers: undefined }, "tiers"],
      ["an unknown meter", { meter: "nope", tiers: WORKED_TIERS }, "meter"],
    ])("when a version has %s, then 422 naming the field", (_n, over, field) =>
      both(async ({ post }) => {
        const res = await post("/v1/plans/worked/prices", {
          meter: "api_calls",
          effective_from: "2026-12-01T00:00:00Z",
          model: "graduated",
          ...over,
        });
        expect(res.status, JSON.stringify(res.body)).toBe(422);
        expect(res.headers["content-type"]).toContain("application/problem+json");
        expect(res.body.errors.map((e: { field: string }) => e.field)).toContain(field);
      }),
    );

    it("when a version is malformed, then 400; for an unknown plan, 404", () =>
      both(async ({ post }) => {
        const bad = await post("/v1/plans/worked/prices", {
          meter: "api_calls",
          effective_from: "yesterday",
          model: "per_unit",
          unit_price: "1e3",
        });
        expect(bad.status).toBe(400);
        expect(bad.body.errors.map((e: { field: string }) => e.field).sort()).toEqual(["effective_from", "unit_price"]);
        const missing = await post("/v1/plans/nope/prices", {
          meter: "api_calls",
          effective_from: NOW,
          model: "per_unit",
          unit_price: "1",
        });
        expect(missing.status).toBe(404);
      }));

    it("when a plan with prices is given another currency, then 409; an unknown currency is 400", () =>
      both(async ({ put }) => {
        const res = await put("/v1/plans/worked", { name: "Worked", currency: "GBP" });
        expect(res.status).toBe(409);
        expect(res.body.code).toBe("currency_locked");
        expect((await put("/v1/plans/x", { name: "X", currency: "XXX" })).status).toBe(400);
      }));

    it("when a subscription is set, then the previous one ends at its start and the customer shows the current one", () =>
      both(async ({ api, put, customer, subscribe }) => {
        await customer("sub@example.com");
        await subscribe("sub@example.com", "worked", "2026-10-01T00:00:00Z");
        const unknown = await put("/v1/customers/sub%40example.com/subscription", { plan: "basic-usd" });
        expect(unknown.status).toBe(422);
        expect((await put("/v1/plans/basic-usd", { name: "Basic", currency: "USD" })).status).toBe(201);
        const body = await subscribe("sub@example.com", "basic-usd", "2026-11-10T00:00:00Z");
        expect(body).toMatchObject({
          customer: "sub@example.com",
          plan: "basic-usd",
          start: "2026-11-10T00:00:00Z",
          end: null,
          // A plan change keeps the customer's cycle (here calendar months, from the first subscription).
          billing: { interval: "month", interval_count: 1, anchor: "2026-10-01T00:00:00Z", time_zone: "UTC" },
          current_period: { start: "2026-11-01T00:00:00Z", end: "2026-12-01T00:00:00Z" },
          previous: { plan: "worked", start: "2026-10-01T00:00:00Z", end: "2026-11-10T00:00:00Z" },
        });
        const c = await api().get("/v1/customers/sub%40example.com").set(admin);
        expect(c.body.subscription).toMatchObject({ plan: "basic-usd", start: "2026-11-10T00:00:00Z", end: null });
        expect((await put("/v1/customers/nobody/subscription", { plan: "worked" })).status).toBe(404);
      }));

    it("when a plan in another currency would start mid-period, then 422; on the period boundary it is fine", () =>
      both(async ({ put, customer, subscribe }) => {
        expect((await put("/v1/plans/euro", { name: "Euro", currency: "EUR" })).status).toBe(201);
        await customer("fx");
        await subscribe("fx", "worked", "2026-10-01T00:00:00Z");
        const mid = await put("/v1/customers/fx/subscription", { plan: "euro", start: "2026-11-15T00:00:00Z" });
        expect(mid.status).toBe(422);
        expect(mid.body.code).toBe("currency_mismatch");
        await subscribe("fx", "euro", "2026-12-01T00:00:00Z");
      }));
  });

  describe("invoices", () => {
    it("when 250,000 calls are billed on the worked example, then the invoice is 264.00 and the summary agrees", () =>
      both(async ({ api, ingest, customer, subscribe, invoice, summary, record }) => {
        await customer("worked-1");
        await subscribe("worked-1", "worked", "2026-10-01T00:00:00Z");
        await ingest([
          { id: "a", customer: "worked-1", meter: "api_calls", value: "100000", timestamp: "2026-11-02T10:00:00Z" },
          { id: "b", customer: "worked-1", meter: "api_calls", value: "100000", timestamp: "2026-11-10T10:00:00Z" },
          { id: "c", customer: "worked-1", meter: "api_calls", value: "50000", timestamp: "2026-11-20T12:10:00Z" },
        ]);
        const inv = record("worked.invoice", await invoice("worked-1"));
        expect(inv).toMatchObject({
          customer: "worked-1",
          period: { start: "2026-11-01T00:00:00Z", end: "2026-12-01T00:00:00Z" },
          currency: "USD",
          total: "264.00",
        });
        const lines = (inv as { lines: { kind: string; quantity: string; amount: string; tier?: number }[] }).lines;
        expect(lines.map((l) => [l.kind, l.tier ?? null, l.quantity, l.amount])).toEqual([
          ["base_fee", null, "1", "99.00"],
          ["usage", 1, "10000", "0.00"],
          ["usage", 2, "90000", "90.00"],
          ["usage", 3, "150000", "75.00"],
        ]);
        const sum = record("worked.summary", await summary("worked-1", { period: "2026-11" }));
        expect(sum).toMatchObject({
          currency: "USD",
          total: "264.00",
          meters: [
            {
              meter: "api_calls",
              quantity: "250000",
              amount: "264.00",
              tier: { index: 3, up_to: null, unit_price: "0.0005", units_to_next_tier: null },
            },
          ],
        });
        // the default period is the current one
        expect((await summary("worked-1")).period).toEqual({
          start: "2026-11-01T00:00:00Z",
          end: "2026-12-01T00:00:00Z",
        });
        // and the same after the rollups are refreshed
        expect((await api().post("/v1/jobs/refresh-rollups/run").set(admin)).status).toBe(200);
        expect((await invoice("worked-1")).total).toBe("264.00");
      }));

    it("when a version changes on an hour boundary and another mid-hour, then each segment is priced on its own exactly", () =>
      both(async ({ api, put, ingest, customer, subscribe, price, invoice, summary, record }) => {
        expect((await put("/v1/plans/segmented", { name: "Segmented", currency: "USD" })).status).toBe(201);
        const v = (from: string, unit: string) => ({ effective_from: from, model: "per_unit", unit_price: unit });
        for (const meter of ["api_calls", "requests", "storage_gb", "seats"]) {
          await price("segmented", { meter, ...v("2026-01-01T00:00:00Z", "1") });
          await price("segmented", { meter, ...v("2026-11-10T00:00:00Z", "10") });
          await price("segmented", { meter, ...v("2026-11-15T10:30:00Z", "100") });
        }
        await customer("seg");
        await subscribe("seg", "segmented", "2026-10-01T00:00:00Z");
        const at = (ts: string, id: string, meter: string, value: string) => ({
          id,
          customer: "seg",
          meter,
          value,
          timestamp: ts,
        });
        await ingest([
          // before the hour-boundary change
          at("2026-11-09T23:59:59.999Z", "1", "api_calls", "2"),
          at("2026-11-09T23:00:00Z", "2", "storage_gb", "7"),
          at("2026-11-09T23:30:00Z", "3", "seats", "4"),
          at("2026-11-09T23:40:00Z", "4", "requests", "1"),
          // between the changes, including the partial hour before 10:30
          at("2026-11-10T00:00:00Z", "5", "api_calls", "3"),
          at("2026-11-15T10:29:59Z", "6", "api_calls", "5"),
          at("2026-11-15T10:10:00Z", "7", "storage_gb", "9"),
          at("2026-11-15T10:20:00Z", "8", "seats", "6"),
          at("2026-11-15T10:25:00Z", "9", "requests", "1"),
          at("2026-11-15T10:26:00Z", "10", "requests", "1"),
          // after the mid-hour change, in the same hour
          at("2026-11-15T10:30:00Z", "11", "api_calls", "1"),
          at("2026-11-15T10:45:00Z", "12", "storage_gb", "3"),
          at("2026-11-15T10:50:00Z", "13", "seats", "2"),
          at("2026-11-15T10:55:00Z", "14", "requests", "1"),
        ]);
        for (const phase of ["fresh", "refreshed"]) {
          if (phase === "refreshed")
            expect((await api().post("/v1/jobs/refresh-rollups/run").set(admin)).status).toBe(200);
          const inv = record(`segments.${phase}`, await invoice("seg")) as {
            lines: { meter: string; quantity: string; amount: string; segment: { start: string } }[];
            total: string;
          };
          const byMeter = (m: string) =>
            inv.lines.filter((l) => l.meter === m).map((l) => [l.segment.start, l.quantity, l.amount]);
          expect(byMeter("api_calls")).toEqual([
            ["2026-11-01T00:00:00Z", "2", "2.00"],
            ["2026-11-10T00:00:00Z", "8", "80.00"],
            ["2026-11-15T10:30:00Z", "1", "100.00"],
          ]);
          expect(byMeter("requests")).toEqual([
            ["2026-11-01T00:00:00Z", "1", "1.00"],
            ["2026-11-10T00:00:00Z", "2", "20.00"],
            ["2026-11-15T10:30:00Z", "1", "100.00"],
          ]);
          expect(byMeter("storage_gb")).toEqual([
            ["2026-11-01T00:00:00Z", "7", "7.00"],
            ["2026-11-10T00:00:00Z", "9", "90.00"],
            ["2026-11-15T10:30:00Z", "3", "300.00"],
          ]);
          expect(byMeter("seats")).toEqual([
            ["2026-11-01T00:00:00Z", "4", "4.00"],
            ["2026-11-10T00:00:00Z", "6", "60.00"],
            ["2026-11-15T10:30:00Z", "2", "200.00"],
          ]);
          expect(inv.total).toBe("964.00");
          const sum = (await summary("seg", { period: "2026-11" })) as {
            meters: { meter: string; quantity: string }[];
          };
          // the period quantity is the aggregation over the whole period, not the sum of segments
          expect(sum.meters.map((m) => [m.meter, m.quantity])).toEqual([
            ["api_calls", "11"],
            ["requests", "4"],
            ["seats", "2"],
            ["storage_gb", "9"],
          ]);
        }
      }));

    it("when a subscription starts mid-period and the plan changes later in it, then each part is priced by its plan and its base fee prorated by hours", () =>
      both(async ({ put, ingest, customer, subscribe, price, invoice, record }) => {
        expect((await put("/v1/plans/starter", { name: "Starter", currency: "USD" })).status).toBe(201);
        await price("starter", {
          meter: "api_calls",
          effective_from: "2026-01-01T00:00:00Z",
          model: "package",
          package_size: "1000",
          package_price: "5",
          base_fee: "10",
        });
        expect((await put("/v1/plans/scale", { name: "Scale", currency: "USD" })).status).toBe(201);
        await price("scale", {
          meter: "api_calls",
          effective_from: "2026-01-01T00:00:00Z",
          model: "volume",
          tiers: [
            { up_to: "1000", unit_price: "0.01", flat_price: "1" },
            { up_to: null, unit_price: "0.005", flat_price: "2" },
          ],
          base_fee: "50",
        });
        await customer("mover");
        await subscribe("mover", "starter", "2026-11-05T12:00:00Z");
        await subscribe("mover", "scale", "2026-11-18T00:00:00Z");
        await ingest([
          { id: "before-sub", customer: "mover", meter: "api_calls", value: "999", timestamp: "2026-11-04T10:00:00Z" },
          { id: "s1", customer: "mover", meter: "api_calls", value: "1500", timestamp: "2026-11-06T10:00:00Z" },
          { id: "s2", customer: "mover", meter: "api_calls", value: "1", timestamp: "2026-11-17T23:59:59Z" },
          { id: "x1", customer: "mover", meter: "api_calls", value: "1200", timestamp: "2026-11-18T00:00:00Z" },
        ]);
        const inv = record("mover", await invoice("mover")) as {
          lines: {
            plan: string;
            kind: string;
            quantity: string;
            amount: string;
            segment: { start: string; end: string };
          }[];
          total: string;
        };
        expect(inv.lines.map((l) => [l.plan, l.kind, l.segment.start, l.segment.end, l.quantity, l.amount])).toEqual([
          // 10 × 300/720 and 50 × 312/720 (November has 720 hours).
          ["starter", "base_fee", "2026-11-05T12:00:00Z", "2026-11-18T00:00:00Z", "1", "4.17"],
          ["scale", "base_fee", "2026-11-18T00:00:00Z", "2026-12-01T00:00:00Z", "1", "21.67"],
          ["starter", "usage", "2026-11-05T12:00:00Z", "2026-11-18T00:00:00Z", "1501", "10.00"],
          ["scale", "usage", "2026-11-18T00:00:00Z", "2026-12-01T00:00:00Z", "1200", "8.00"],
        ]);
        expect(inv.total).toBe("43.84");
      }));

    it("when a customer has no subscription, then the summary lists usage without money", () =>
      both(async ({ ingest, invoice, summary, record }) => {
        await ingest([
          { id: "free", customer: "free-rider", meter: "api_calls", value: 5, timestamp: "2026-11-20T01:00:00Z" },
        ]);
        const sum = record("free", await summary("free-rider", { period: "2026-11" }));
        expect(sum).toMatchObject({
          currency: null,
          total: "0",
          meters: [{ meter: "api_calls", quantity: "5", amount: "0" }],
        });
        expect((await invoice("free-rider")).lines).toEqual([]);
      }));

    it("when a JPY plan is billed, then amounts are whole yen", () =>
      both(async ({ put, ingest, customer, subscribe, price, invoice, record }) => {
        expect((await put("/v1/plans/yen", { name: "Yen", currency: "JPY" })).status).toBe(201);
        await price("yen", {
          meter: "api_calls",
          effective_from: "2026-01-01T00:00:00Z",
          model: "per_unit",
          unit_price: "0.5",
        });
        await customer("tokyo");
        await subscribe("tokyo", "yen", "2026-11-01T00:00:00Z");
        await ingest([{ id: "1", customer: "tokyo", meter: "api_calls", value: 3, timestamp: "2026-11-20T01:00:00Z" }]);
        const inv = record("yen", await invoice("tokyo")) as { lines: { amount: string }[]; total: string };
        expect(inv.lines.map((l) => l.amount)).toEqual(["2"]);
        expect(inv.total).toBe("2");
      }));
  });

  describe("access", () => {
    it("when a read key bound to a customer asks about another, then 404; about its own, 200; unknown customers 404", () =>
      both(async ({ api, post, customer }) => {
        await customer("own");
        await customer("other");
        const key = await post("/v1/api-keys", { scopes: ["read"], customer: "own" });
        const own = await api().get("/v1/customers/own/summary").set(bearer(key.body.key));
        expect(own.status).toBe(200);
        const other = await api().get("/v1/customers/other/invoice").set(bearer(key.body.key));
        expect(other.status).toBe(404);
        expect((await api().get("/v1/customers/ghost/summary").set(admin)).status).toBe(404);
        const ingestKey = await post("/v1/api-keys", { scopes: ["ingest"] });
        expect((await api().get("/v1/customers/other/summary").set(bearer(ingestKey.body.key))).status).toBe(403);
        expect((await api().get("/v1/customers/other/summary").query({ period: "2026-13" }).set(admin)).status).toBe(
          400,
        );
      }));
  });
});
