// GET /v1/usage and GET /v1/usage/export on both engines: alignment, range caps, visibility, CSV format and
// formula escaping.
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../src/clock.js";
import { BACKENDS } from "./helpers/databases.js";
import { defineMeters, postJson } from "./helpers/events.js";
import { admin, bearer, startTestTally, type TestTally } from "./helpers/tally.js";

const NOW = "2026-11-03T12:30:00Z";

describe.each(BACKENDS)("usage API on %s", (backend) => {
  let t: TestTally;
  let readKey: string;
  let boundKey: string;
  const get = (query: Record<string, string>, headers = admin) =>
    request(t.tally.app).get("/v1/usage").query(query).set(headers);

  beforeAll(async () => {
    t = await startTestTally(backend, { clock: new ManualClock(NOW) });
    await defineMeters(t.tally, { calls: "sum", seats: "max" });
    const res = await postJson(t.tally, [
      { id: "1", customer: "acme", meter: "calls", value: 2, timestamp: "2026-11-02T10:15:00Z" },
      { id: "2", customer: "acme", meter: "calls", value: 3, timestamp: "2026-11-02T13:15:00Z" },
      { id: "3", customer: "=cmd|' /C calc'!A0", meter: "calls", value: -1, timestamp: "2026-11-02T10:15:00Z" },
      { id: "4", customer: "beta", meter: "seats", value: 7, timestamp: "2026-11-01T00:00:00Z" },
    ]);
    expect(res.status).toBe(202);
    const mk = async (body: object) =>
      (await request(t.tally.app).post("/v1/api-keys").set(admin).send(body)).body.key as string;
    readKey = await mk({ scopes: ["read"] });
    boundKey = await mk({ scopes: ["read"], customer: "acme" });
  });
  afterAll(() => t.close());

  it("when from and to are not aligned, then both are aligned down to the granularity", async () => {
    const res = await get({
      customer: "acme",
      meter: "calls",
      granularity: "day",
      from: "2026-11-02T10:00:00Z",
      to: "2026-11-03T09:00:00+02:00",
    });
    expect(res.status).toBe(200);
    expect(res.body.data).toEqual([
      { start: "2026-11-02T00:00:00Z", end: "2026-11-03T00:00:00Z", value: "5", count: 2 },
    ]);
    expect(res.body).toMatchObject({
      customer: "acme",
      meter: "calls",
      granularity: "day",
      as_of: "2026-11-03T12:30:00Z",
    });
  });

  it("when buckets have no events, then they are left out", async () => {
    const res = await get({
      customer: "acme",
      meter: "calls",
      granularity: "hour",
      from: "2026-11-02T00:00:00Z",
      to: "2026-11-03T00:00:00Z",
    });
    expect(res.body.data.map((p: { start: string }) => p.start)).toEqual([
      "2026-11-02T10:00:00Z",
      "2026-11-02T13:00:00Z",
    ]);
  });

  it.each([
    ["hour", "2026-10-01T00:00:00Z", "2026-11-01T01:00:00Z", "31 days"],
    ["day", "2025-11-01T00:00:00Z", "2026-11-03T00:00:00Z", "366 days"],
    ["month", "2016-10-01T00:00:00Z", "2026-11-01T00:00:00Z", "120 months"],
  ])("when a %s series spans more than its cap, then 400 (%s → %s)", async (granularity, from, to, cap) => {
    const res = await get({ customer: "acme", meter: "calls", granularity, from, to });
    expect(res.status).toBe(400);
    expect(res.body.code).toBe("range_too_large");
    expect(res.body.detail).toContain(cap);
  });

  it.each([
    ["hour", "2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z"],
    ["day", "2025-11-03T00:00:00Z", "2026-11-04T00:00:00Z"],
    ["month", "2016-11-01T00:00:00Z", "2026-11-01T00:00:00Z"],
  ])("when a %s series spans exactly its cap, then 200", async (granularity, from, to) => {
    expect((await get({ customer: "acme", meter: "calls", granularity, from, to })).status).toBe(200);
  });

  it.each([
    [{ meter: "calls", granularity: "day", from: NOW, to: NOW }, "customer"],
    [{ customer: "acme", meter: "calls", granularity: "week", from: NOW, to: NOW }, "granularity"],
    [{ customer: "acme", meter: "calls", granularity: "day", from: "yesterday", to: NOW }, "from"],
    [{ customer: "acme", meter: "calls", granularity: "day", from: "2026-11-03", to: NOW }, "from"],
  ])("when the query is %j, then 400 naming %s", async (query, field) => {
    const res = await get(query as Record<string, string>);
    expect(res.status).toBe(400);
    expect(res.body.errors.map((e: { field: string }) => e.field)).toContain(field);
  });

  it("when to is not after from, then 400", async () => {
    const res = await get({
      customer: "acme",
      meter: "calls",
      granularity: "day",
      from: "2026-11-03T00:00:00Z",
      to: "2026-11-03T05:00:00Z",
    });
    expect(res.status).toBe(400);
    expect(res.body.code).toBe("invalid_range");
  });

  it("when the meter is unknown, then 422; when the customer is unknown, then 404", async () => {
    const base = { granularity: "day", from: "2026-11-01T00:00:00Z", to: "2026-11-04T00:00:00Z" };
    expect((await get({ ...base, customer: "acme", meter: "nope" })).status).toBe(422);
    expect((await get({ ...base, customer: "nobody", meter: "calls" })).status).toBe(404);
  });

  it("when a read key bound to a customer asks about another, then 404; about its own, then 200", async () => {
    const base = { meter: "calls", granularity: "day", from: "2026-11-01T00:00:00Z", to: "2026-11-04T00:00:00Z" };
    expect((await get({ ...base, customer: "beta" }, bearer(boundKey))).status).toBe(404);
    expect((await get({ ...base, customer: "acme" }, bearer(boundKey))).status).toBe(200);
    expect((await get({ ...base, customer: "beta" }, bearer(readKey))).status).toBe(200);
  });

  describe("CSV export", () => {
    const exportCsv = (query: Record<string, string>, headers = admin) =>
      request(t.tally.app)
        .get("/v1/usage/export")
        .query(query)
        .set(headers)
        .buffer(true)
        .parse((res, cb) => {
          let text = "";
          res.on("data", (d: Buffer) => {
            text += d.toString();
          });
          res.on("end", () => cb(null, text));
        });

    it("when an admin exports every customer, then the CSV has the header and one row per bucket, formulas escaped", async () => {
      const res = await exportCsv({ granularity: "day", from: "2026-11-01T00:00:00Z", to: "2026-11-04T00:00:00Z" });
      expect(res.status).toBe(200);
      expect(res.headers["content-type"]).toMatch(/^text\/csv/);
      expect(res.body).toBe(
        [
          "start,end,customer,meter,value,count",
          "2026-11-01T00:00:00Z,2026-11-02T00:00:00Z,beta,seats,7,1",
          "2026-11-02T00:00:00Z,2026-11-03T00:00:00Z,'=cmd|' /C calc'!A0,calls,-1,1",
          "2026-11-02T00:00:00Z,2026-11-03T00:00:00Z,acme,calls,5,2",
          "",
        ].join("\n"),
      );
    });

    it("when a bound key exports, then only its customer; another customer is 404", async () => {
      const res = await exportCsv(
        { granularity: "hour", from: "2026-11-02T00:00:00Z", to: "2026-11-03T00:00:00Z" },
        bearer(boundKey),
      );
      expect(res.status).toBe(200);
      expect(res.body.trim().split("\n")).toEqual([
        "start,end,customer,meter,value,count",
        "2026-11-02T10:00:00Z,2026-11-02T11:00:00Z,acme,calls,2,1",
        "2026-11-02T13:00:00Z,2026-11-02T14:00:00Z,acme,calls,3,1",
      ]);
      const other = await exportCsv(
        { customer: "beta", from: "2026-11-01T00:00:00Z", to: "2026-11-04T00:00:00Z" },
        bearer(boundKey),
      );
      expect(other.status).toBe(404);
    });

    it("when an unbound read key exports without a customer, then 400; with one, then 200", async () => {
      const q = { from: "2026-11-01T00:00:00Z", to: "2026-11-04T00:00:00Z" };
      expect((await exportCsv(q, bearer(readKey))).status).toBe(400);
      expect((await exportCsv({ ...q, customer: "beta" }, bearer(readKey))).status).toBe(200);
    });
  });
});
