// Meters with dimensions: declared on the meter, fixed once it has events, and every event's combination of values
// stored once (dimension_sets) with its id on the event — on both engines.
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BACKENDS } from "./helpers/databases.js";
import { ndjson, postJson, postNdjson } from "./helpers/events.js";
import { admin, startTestTally, type TestTally } from "./helpers/tally.js";

describe.each(BACKENDS)("meters with dimensions on %s", (backend) => {
  let t: TestTally;
  const put = (key: string, body: object) => request(t.tally.app).put(`/v1/meters/${key}`).set(admin).send(body);
  beforeAll(async () => {
    t = await startTestTally(backend);
  });
  afterAll(() => t.close());

  it("when a meter declares dimensions and stripe_value, then they come back; left out, they keep their value", async () => {
    const created = await put("llm_tokens", {
      name: "LLM tokens",
      unit: "token",
      aggregation: "sum",
      dimensions: ["model", "token_type"],
      stripe_value: "amount",
    });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ dimensions: ["model", "token_type"], stripe_value: "amount" });
    const plain = await put("calls", { name: "Calls", unit: "call", aggregation: "sum" });
    expect(plain.body).toMatchObject({ dimensions: [], stripe_value: "quantity" });
    const renamed = await put("llm_tokens", { name: "Tokens", unit: "token", aggregation: "sum" });
    expect(renamed.status).toBe(200);
    expect(renamed.body).toMatchObject({ name: "Tokens", dimensions: ["model", "token_type"], stripe_value: "amount" });
    const listed = await request(t.tally.app).get("/v1/meters").set(admin);
    expect(listed.body.data.find((m: { key: string }) => m.key === "llm_tokens").dimensions).toEqual([
      "model",
      "token_type",
    ]);
  });

  it.each([
    [{ dimensions: ["a", "b", "c", "d", "e"] }, "dimensions"],
    [{ dimensions: ["a", "a"] }, "dimensions"],
    [{ dimensions: [""] }, "dimensions[0]"],
    [{ stripe_value: "cents" }, "stripe_value"],
  ])("when the meter body has %j, then 400 naming %s", async (extra, field) => {
    const res = await put("bad", { name: "x", unit: "u", aggregation: "sum", ...extra });
    expect(res.status).toBe(400);
    expect(res.body.errors.map((e: { field: string }) => e.field)).toContain(field);
  });

  it("when a meter has events, then changing its dimensions is 409 meter_in_use; the same dimensions are fine", async () => {
    await put("gpu", { name: "GPU", unit: "s", aggregation: "sum", dimensions: ["region"] });
    // No events yet: dimensions may still change.
    expect((await put("gpu", { name: "GPU", unit: "s", aggregation: "sum", dimensions: ["instance"] })).status).toBe(
      200,
    );
    const ingest = await postJson(t.tally, [{ id: "g1", customer: "c-gpu", meter: "gpu", value: 5 }]);
    expect(ingest.status).toBe(202);
    const changed = await put("gpu", { name: "GPU", unit: "s", aggregation: "sum", dimensions: ["region"] });
    expect(changed.status).toBe(409);
    expect(changed.body).toMatchObject({ code: "meter_in_use" });
    const dropped = await put("gpu", { name: "GPU", unit: "s", aggregation: "sum", dimensions: [] });
    expect(dropped.status).toBe(409);
    const same = await put("gpu", { name: "GPU hours", unit: "s", aggregation: "sum", dimensions: ["instance"] });
    expect(same.status).toBe(200);
    // A meter without dimensions that has events cannot gain some either.
    await postJson(t.tally, [{ id: "p1", customer: "c-gpu", meter: "calls" }]);
    expect((await put("calls", { name: "Calls", unit: "call", aggregation: "sum", dimensions: ["x"] })).status).toBe(
      409,
    );
  });

  it("when events carry dimension properties, then each distinct combination is one set, absent values null", async () => {
    await put("chat", { name: "Chat", unit: "token", aggregation: "sum", dimensions: ["model", "token_type"] });
    const c = "c-sets";
    const res = await postJson(t.tally, [
      { id: "1", customer: c, meter: "chat", value: 120, properties: { model: "gpt-4o", token_type: "input" } },
      { id: "2", customer: c, meter: "chat", value: 50, properties: { model: "gpt-4o", token_type: "output" } },
      { id: "3", customer: c, meter: "chat", value: 1, properties: { token_type: "input", model: "gpt-4o" } },
      { id: "4", customer: c, meter: "chat", value: 7, properties: { other: "x" } },
      { id: "5", customer: c, meter: "chat", value: 9 },
      { id: "6", customer: c, meter: "chat", value: 2, properties: { model: "mini" } },
    ]);
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    const more = await postNdjson(
      t.tally,
      ndjson([{ id: "7", customer: c, meter: "chat", value: 3, properties: { model: "mini", token_type: null } }]),
    );
    expect(more.status).toBe(400); // property values are strings; null is not one
    const nd = await postNdjson(
      t.tally,
      ndjson([{ id: "8", customer: c, meter: "chat", value: 3, properties: { model: "mini" } }]),
    );
    expect(nd.status, nd.text).toBe(202);
    const { rows } = await t.tally.ctx.db.query<{ event_id: string; dimensions: object | null; set: number }>(
      `SELECT e.event_id, d.dimensions, e.dimension_set AS set FROM usage_events e
       LEFT JOIN dimension_sets d ON d.id = e.dimension_set WHERE e.customer_id = $1 ORDER BY e.event_id`,
      [c],
    );
    const byId = Object.fromEntries(rows.map((r) => [r.event_id, r]));
    expect(byId["1"]?.dimensions).toEqual({ model: "gpt-4o", token_type: "input" });
    expect(byId["3"]?.set).toBe(byId["1"]?.set);
    expect(byId["2"]?.dimensions).toEqual({ model: "gpt-4o", token_type: "output" });
    expect(byId["4"]?.set).toBe(0);
    expect(byId["5"]?.set).toBe(0);
    expect(byId["6"]?.dimensions).toEqual({ model: "mini" });
    expect(byId["8"]?.set).toBe(byId["6"]?.set);
    const sets = await t.tally.ctx.db.query<{ n: string }>(
      "SELECT count(*)::text AS n FROM dimension_sets WHERE meter = 'chat'",
      [],
    );
    expect(sets.rows[0]?.n).toBe("3");
  });

  it("when /openapi.json is fetched, then it documents dimensions, grouped reads and per-dimension prices", async () => {
    const doc = (await request(t.tally.app).get("/openapi.json")).body;
    const schemas = doc.components.schemas;
    expect(Object.keys(schemas.MeterInput.properties)).toEqual(expect.arrayContaining(["dimensions", "stripe_value"]));
    expect(Object.keys(schemas.Meter.properties)).toEqual(expect.arrayContaining(["dimensions", "stripe_value"]));
    expect(Object.keys(schemas.PriceVersionInput.properties)).toEqual(
      expect.arrayContaining(["group_by", "overrides"]),
    );
    expect(schemas.PriceOverrideInput.properties.match).toBeDefined();
    const usage = doc.paths["/v1/usage"].get.parameters.map((p: { name: string; style?: string }) => [p.name, p.style]);
    expect(usage).toEqual(
      expect.arrayContaining([
        ["group_by", undefined],
        ["filter", "deepObject"],
      ]),
    );
    const exportParams = doc.paths["/v1/usage/export"].get.parameters.map((p: { name: string }) => p.name);
    expect(exportParams).toEqual(expect.arrayContaining(["meter", "group_by", "filter"]));
    const summaryMeter = schemas.CustomerSummary.properties.meters.items.properties;
    expect(summaryMeter.groups).toBeDefined();
    // An invoice line is a priced line or a credit line; the priced one carries its group.
    const lineKinds = schemas.InvoicePreview.properties.lines.items.anyOf as { properties: Record<string, unknown> }[];
    expect(lineKinds.some((l) => l.properties.dimensions !== undefined)).toBe(true);
    expect(doc.paths["/v1/meters/{key}"].put.responses["409"]).toBeDefined();
  });
});
