// Per-dimension prices through the HTTP API on both engines: the worked example of issue 14 (invoice total 2.36),
// grouped summaries, the rules of group_by and overrides, and limits that stay per (customer, meter) over all groups.
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../src/clock.js";
import { BACKENDS, type TestBackend } from "./helpers/databases.js";
import { postJson } from "./helpers/events.js";
import { admin, startTestTally, type TestTally } from "./helpers/tally.js";

const NOW = "2026-11-20T12:30:00Z";
const observed: Record<TestBackend, Record<string, unknown>> = { embedded: {}, postgres: {} };

const WORKED_PRICE = {
  meter: "llm_tokens",
  effective_from: "2026-01-01T00:00:00Z",
  model: "per_unit",
  unit_price: "0.001",
  group_by: ["model"],
  overrides: [
    {
      match: { model: "gpt-4o" },
      model: "graduated",
      tiers: [
        { up_to: "100", unit_price: "0.01" },
        { up_to: null, unit_price: "0.005" },
      ],
    },
  ],
};

describe.each(BACKENDS)("per-dimension prices on %s", (backend) => {
  let t: TestTally;
  const api = () => request(t.tally.app);
  const put = (path: string, body: object) => api().put(path).set(admin).send(body);
  const get = async (path: string) => {
    const res = await api().get(path).set(admin);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const { as_of: _ignored, ...rest } = res.body;
    observed[backend][path] = rest;
    return res.body;
  };
  const worked = async (customer: string) => {
    expect((await put(`/v1/customers/${customer}`, {})).status).toBe(201);
    const sub = await put(`/v1/customers/${customer}/subscription`, { plan: "llm", start: "2026-11-01T00:00:00Z" });
    expect(sub.status).toBe(200);
    const at = "2026-11-10T08:00:00Z";
    const res = await postJson(t.tally, [
      {
        id: "1",
        customer,
        meter: "llm_tokens",
        value: 120,
        timestamp: at,
        properties: { model: "gpt-4o", token_type: "input" },
      },
      {
        id: "2",
        customer,
        meter: "llm_tokens",
        value: 50,
        timestamp: at,
        properties: { model: "gpt-4o", token_type: "output" },
      },
      {
        id: "3",
        customer,
        meter: "llm_tokens",
        value: 1000,
        timestamp: at,
        properties: { model: "mini", token_type: "input" },
      },
      { id: "4", customer, meter: "llm_tokens", value: 7, timestamp: at, properties: { token_type: "input" } },
    ]);
    expect(res.status, JSON.stringify(res.body)).toBe(202);
  };

  beforeAll(async () => {
    t = await startTestTally(backend, { clock: new ManualClock(NOW) });
    const meter = await put("/v1/meters/llm_tokens", {
      name: "LLM tokens",
      unit: "token",
      aggregation: "sum",
      dimensions: ["model", "token_type"],
    });
    expect(meter.status).toBe(201);
    expect((await put("/v1/plans/llm", { name: "LLM", currency: "USD" })).status).toBe(201);
    const version = await api().post("/v1/plans/llm/prices").set(admin).send(WORKED_PRICE);
    expect(version.status, JSON.stringify(version.body)).toBe(201);
    expect(version.body).toMatchObject({
      group_by: ["model"],
      overrides: [{ match: { model: "gpt-4o" }, model: "graduated", tiers: [{ up_to: "100" }, { up_to: null }] }],
    });
  });
  afterAll(() => t.close());

  it("when the worked example is invoiced, then gpt-4o 1.00 + 0.35, mini 1.00, no model 0.01: total 2.36", async () => {
    await worked("acme");
    for (const phase of ["fresh", "refreshed"]) {
      if (phase === "refreshed") expect((await api().post("/v1/jobs/refresh-rollups/run").set(admin)).status).toBe(200);
      const invoice = await get("/v1/customers/acme/invoice?period=2026-11");
      expect(
        invoice.lines.map((l: Record<string, unknown>) => [l.dimensions, l.tier ?? null, l.quantity, l.amount]),
      ).toEqual([
        [{ model: "gpt-4o" }, 1, "100", "1.00"],
        [{ model: "gpt-4o" }, 2, "70", "0.35"],
        [{ model: "mini" }, null, "1000", "1.00"],
        [{ model: null }, null, "7", "0.01"],
      ]);
      expect(invoice.total).toBe("2.36");
      const summary = await get("/v1/customers/acme/summary?period=2026-11");
      expect(summary.meters).toEqual([
        {
          meter: "llm_tokens",
          quantity: "1177",
          amount: "2.36",
          groups: [
            { dimensions: { model: "gpt-4o" }, quantity: "170", amount: "1.35" },
            { dimensions: { model: "mini" }, quantity: "1000", amount: "1.00" },
            { dimensions: { model: null }, quantity: "7", amount: "0.01" },
          ],
        },
      ]);
      expect(summary.total).toBe("2.36");
    }
  });

  it("when limits are set on a grouped meter, then they count every group together", async () => {
    await worked("limited");
    expect(
      (await put("/v1/customers/limited/limits/llm_tokens", { soft: "2", hard: "3", unit: "amount" })).status,
    ).toBe(200);
    await t.tally.ctx.limits.evaluateCustomer("limited", "limit-change");
    const summary = await get("/v1/customers/limited/summary?period=2026-11");
    expect(summary.meters[0].limit).toEqual({ soft: "2", hard: "3", unit: "amount", state: "soft" });
    expect((await put("/v1/customers/limited/limits/llm_tokens", { hard: "1000", unit: "quantity" })).status).toBe(200);
    await t.tally.ctx.limits.evaluateCustomer("limited", "limit-change");
    const entitlement = await api().get("/v1/entitlements/limited/llm_tokens").set(admin);
    expect(entitlement.status).toBe(429);
    expect(entitlement.body).toMatchObject({ allowed: false, quantity: "1177" });
  });

  it.each([
    [
      "overrides without group_by",
      { overrides: [{ match: { model: "a" }, model: "per_unit", unit_price: "1" }], group_by: undefined },
      "overrides",
    ],
    [
      "a match key outside group_by",
      { overrides: [{ match: { token_type: "input" }, model: "per_unit", unit_price: "1" }] },
      "overrides[0].match.token_type",
    ],
    ["a group_by that is not a dimension of the meter", { group_by: ["region"], overrides: undefined }, "group_by[0]"],
  ])("when a version has %s, then 422 naming %s", async (_n, over, field) => {
    const body = { ...WORKED_PRICE, effective_from: "2026-06-01T00:00:00Z", ...over };
    const res = await api().post("/v1/plans/llm/prices").set(admin).send(body);
    expect(res.status, JSON.stringify(res.body)).toBe(422);
    expect(res.body.errors.map((e: { field: string }) => e.field)).toContain(field);
  });
});

describe("both engines", () => {
  it("when the same invoices were asked of both, then they are identical", () => {
    expect(Object.keys(observed.embedded).length).toBeGreaterThanOrEqual(3);
    expect(observed.postgres).toEqual(observed.embedded);
  });
});
