// POST /v1/events on both engines: JSON, NDJSON, gzip, dedupe, concurrency, every validation rule, limits,
// receipts — and never a partial write.
import http from "node:http";
import { gzipSync } from "node:zlib";
import request from "supertest";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { BACKENDS } from "./helpers/databases.js";
import {
  defineMeters,
  isoMinutesAgo,
  ndjson,
  postJson,
  postNdjson,
  postRaw,
  storedCount,
  type TestEvent,
} from "./helpers/events.js";
import { admin, bearer, startTestTally, type TestTally } from "./helpers/tally.js";

let seq = 0;
const uid = (p = "e") => `${p}-${++seq}-${Math.random().toString(36).slice(2, 8)}`;

describe.each(BACKENDS)("ingest on %s", (backend) => {
  let t: TestTally;
  let customer: string;
  const ev = (over: Partial<TestEvent> = {}): TestEvent => ({ id: uid(), customer, meter: "calls", value: 1, ...over });

  beforeAll(async () => {
    t = await startTestTally(backend, {
      env: { TALLY_NDJSON_MAX_BYTES: String(4 * 1024 * 1024) },
    });
    await defineMeters(t.tally, { calls: "sum", hits: "count", seats: "max", plan_level: "last" });
  });
  afterAll(() => t.close());
  beforeEach(() => {
    customer = uid("cust");
  });

  describe("JSON", () => {
    it("when a batch is posted, then 202 with the counts, and every event is stored with its exact value", async () => {
      const ok = await postRaw(
        t.tally,
        { "Content-Type": "application/json", "Content-Encoding": "gzip" },
        gzipSync(JSON.stringify({ events: [ev()] })),
      );
      expect(ok.body).toEqual({ accepted: 1, duplicates: 0 });
      const events = [
        ev({ value: "0.000000001" }),
        ev({ value: 2.5 }),
        ev({ value: "123456789012345678" }),
        ev({ value: "-3" }),
      ];
      const res = await postJson(t.tally, events);
      expect(res.status).toBe(202);
      expect(res.body).toEqual({ accepted: 4, duplicates: 0 });
      const { rows } = await t.tally.ctx.db.query<{ v: string }>(
        "SELECT sum(value)::text AS v FROM usage_events WHERE customer_id = $1",
        [customer],
      );
      expect(rows[0]?.v).toBe("123456789012345678.500000001");
    });

    it("when the same id comes twice in one batch, then the first is stored and the second is a duplicate", async () => {
      const a = ev({ value: 5 });
      const res = await postJson(t.tally, [a, { ...a, value: 7 }, ev()]);
      expect(res.body).toEqual({ accepted: 2, duplicates: 1 });
      const { rows } = await t.tally.ctx.db.query<{ v: string }>(
        "SELECT value::text AS v FROM usage_events WHERE customer_id = $1 AND event_id = $2",
        [customer, a.id],
      );
      expect(rows).toEqual([{ v: "5" }]);
    });

    it("when a batch is retried, then nothing is counted twice", async () => {
      const batch = [ev(), ev(), ev()];
      expect((await postJson(t.tally, batch)).body).toEqual({ accepted: 3, duplicates: 0 });
      expect((await postJson(t.tally, batch)).body).toEqual({ accepted: 0, duplicates: 3 });
      expect((await postJson(t.tally, [...batch, ev()])).body).toEqual({ accepted: 1, duplicates: 3 });
      expect(await storedCount(t.tally, "customer_id = $1", [customer])).toBe(4);
    });

    it("when two customers use the same event id, then both are stored", async () => {
      const id = uid();
      const res = await postJson(t.tally, [ev({ id }), ev({ id, customer: `${customer}-b` })]);
      expect(res.body).toEqual({ accepted: 2, duplicates: 0 });
    });

    it("when an unknown customer sends events, then the customer is registered", async () => {
      const c = `${uid("new")}@example.com`;
      await postJson(t.tally, [ev({ customer: c })]);
      const res = await request(t.tally.app)
        .get(`/v1/customers/${encodeURIComponent(c)}`)
        .set(admin);
      expect(res.status).toBe(200);
      expect(res.body.id).toBe(c);
    });

    it("when ten identical batches are posted concurrently, then exactly one copy is stored and the counts add up", async () => {
      const batch = Array.from({ length: 200 }, () => ev());
      const results = await Promise.all(Array.from({ length: 10 }, () => postJson(t.tally, batch)));
      for (const r of results) expect(r.status).toBe(202);
      const accepted = results.reduce((s, r) => s + r.body.accepted, 0);
      const duplicates = results.reduce((s, r) => s + r.body.duplicates, 0);
      expect(accepted).toBe(200);
      expect(duplicates).toBe(1800);
      expect(await storedCount(t.tally, "customer_id = $1", [customer])).toBe(200);
    });

    it("when overlapping batches in different orders are posted concurrently, then each event is stored once", async () => {
      const pool = Array.from({ length: 300 }, () => ev());
      const shuffled = (xs: TestEvent[]) => [...xs].sort(() => Math.random() - 0.5);
      const batches = Array.from({ length: 8 }, (_, i) => shuffled(pool.slice(i * 25, i * 25 + 150)));
      const results = await Promise.all(batches.map((b) => postJson(t.tally, b)));
      for (const r of results) expect(r.status).toBe(202);
      const distinct = new Set(batches.flat().map((e) => e.id)).size;
      expect(results.reduce((s, r) => s + r.body.accepted, 0)).toBe(distinct);
      expect(await storedCount(t.tally, "customer_id = $1", [customer])).toBe(distinct);
    });

    it("when an empty batch is posted, then 202 with zero counts", async () => {
      expect((await postJson(t.tally, [])).body).toEqual({ accepted: 0, duplicates: 0 });
    });

    it("when properties are given, then they are stored and come back on the receipt", async () => {
      const e = ev({ properties: { region: "eu-west-1", path: "/v1/x\t'; DROP TABLE usage_events; --" } });
      expect((await postJson(t.tally, [e])).status).toBe(202);
      const res = await request(t.tally.app)
        .get(`/v1/events/${encodeURIComponent(customer)}/${encodeURIComponent(e.id)}`)
        .set(admin);
      expect(res.body.properties).toEqual(e.properties);
    });
  });

  describe("validation: one bad event refuses the whole batch and lists every bad event", () => {
    const refused = async (events: unknown[], status: number, fields: string[]) => {
      const before = await storedCount(t.tally);
      const res = await postJson(t.tally, events);
      expect(res.status, JSON.stringify(res.body)).toBe(status);
      expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
      expect(res.body.errors.map((e: { field: string }) => e.field).sort()).toEqual([...fields].sort());
      expect(await storedCount(t.tally)).toBe(before);
      return res.body;
    };

    it("when a meter is unknown, then 422 naming the event", async () => {
      const body = await refused([ev(), ev({ meter: "nope" }), ev()], 422, ["events[1].meter"]);
      expect(body.errors[0]).toMatchObject({ index: 1, message: 'unknown meter "nope"' });
    });

    it("when timestamps are outside the window, then 422 for each", async () => {
      await refused(
        [ev({ timestamp: isoMinutesAgo(36 * 24 * 60) }), ev(), ev({ timestamp: isoMinutesAgo(-10) })],
        422,
        ["events[0].timestamp", "events[2].timestamp"],
      );
    });

    it("when a max, count or last meter gets a negative value, then 422", async () => {
      await refused(
        [
          ev({ meter: "seats", value: -1 }),
          ev({ meter: "hits", value: "-1" }),
          ev({ meter: "plan_level", value: -2 }),
          ev({ value: -1 }),
        ],
        422,
        ["events[0].value", "events[1].value", "events[2].value"],
      );
    });

    it("when values have too many digits or decimals or are not numbers, then 400 for each", async () => {
      await refused(
        [
          ev({ value: "1.0000000001" }),
          ev({ value: "1234567890123456789" }),
          ev({ value: "12abc" }),
          ev({ value: 1234567890.1234567 }),
        ],
        400,
        ["events[0].value", "events[1].value", "events[2].value", "events[3].value"],
      );
    });

    it("when fields are missing, mistyped or unknown, then 400 naming each", async () => {
      await refused(
        [{ customer, meter: "calls" }, { id: 5, customer, meter: "calls" }, { ...ev(), colour: "red" }, "string", null],
        400,
        ["events[0].id", "events[1].id", "events[2].colour", "events[3]", "events[4]"],
      );
    });

    it("when the body is not {events: [...]}, then 400", async () => {
      for (const body of ["[]", '{"event": []}', '{"events": {}}', '{"events": [], "extra": 1}', "null"]) {
        const res = await request(t.tally.app)
          .post("/v1/events")
          .set(admin)
          .set("Content-Type", "application/json")
          .send(body);
        expect(res.status, body).toBe(400);
      }
    });

    it("when the JSON is malformed, then 400 malformed_json", async () => {
      const res = await request(t.tally.app)
        .post("/v1/events")
        .set(admin)
        .set("Content-Type", "application/json")
        .send('{"events": [');
      expect(res.status).toBe(400);
      expect(res.body.code).toBe("malformed_json");
    });

    it("when a batch is valid except one event among many, then nothing of it is stored", async () => {
      const events = Array.from({ length: 500 }, () => ev());
      events[377] = ev({ timestamp: "2026-02-30T00:00:00Z" });
      await refused(events, 400, ["events[377].timestamp"]);
    });
  });

  describe("limits and content types", () => {
    it("when a JSON body has more than 10,000 events, then 413 and nothing is stored", async () => {
      const before = await storedCount(t.tally);
      const events = Array.from({ length: 10_001 }, (_, i) => ({ id: `x${i}`, customer: "c", meter: "calls" }));
      const res = await postRaw(
        t.tally,
        { "Content-Type": "application/json", "Content-Encoding": "gzip" },
        gzipSync(JSON.stringify({ events })),
      );
      expect(res.status).toBe(413);
      expect(res.body.detail).toMatch(/10001 events.*at most 10000/);
      expect(await storedCount(t.tally)).toBe(before);
    });

    it("when a JSON body is larger than 10 MiB (after gunzip), then 413", async () => {
      const pad = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`p${i}`, "x".repeat(1000)]));
      const events = Array.from({ length: 700 }, () => ev({ properties: pad }));
      const res = await postRaw(
        t.tally,
        { "Content-Type": "application/json", "Content-Encoding": "gzip" },
        gzipSync(JSON.stringify({ events })),
      );
      expect(res.status).toBe(413);
      expect(res.body.code).toBe("body_too_large");
    });

    it("when the content type is neither JSON nor NDJSON, then 415", async () => {
      for (const type of ["text/plain", "application/x-www-form-urlencoded", "text/csv"]) {
        const res = await request(t.tally.app).post("/v1/events").set(admin).set("Content-Type", type).send("x");
        expect(res.status, type).toBe(415);
      }
      const none = await request(t.tally.app).post("/v1/events").set(admin);
      expect(none.status).toBe(415);
    });

    it("when the content encoding is not gzip, then 415; when gzip is corrupt, then 400", async () => {
      const br = await request(t.tally.app)
        .post("/v1/events")
        .set(admin)
        .set("Content-Type", "application/json")
        .set("Content-Encoding", "br")
        .send("{}");
      expect(br.status).toBe(415);
      const bad = await postRaw(
        t.tally,
        { "Content-Type": "application/json", "Content-Encoding": "gzip" },
        Buffer.from("definitely not gzip"),
      );
      expect(bad.body.code).toBe("malformed_body");
      expect(bad.status).toBe(400);
    });
  });

  describe("NDJSON", () => {
    it("when NDJSON is posted, plain and gzipped, then every line is stored", async () => {
      const a = Array.from({ length: 1000 }, () => ev());
      const b = Array.from({ length: 1000 }, () => ev({ meter: "hits" }));
      expect((await postNdjson(t.tally, ndjson(a))).body).toEqual({ accepted: 1000, duplicates: 0 });
      expect((await postNdjson(t.tally, ndjson([...b, ...a.slice(0, 10)]), { gzip: true })).body).toEqual({
        accepted: 1000,
        duplicates: 10,
      });
      expect(await storedCount(t.tally, "customer_id = $1", [customer])).toBe(2000);
    });

    it("when NDJSON has blank lines and CRLF line ends, then they are fine", async () => {
      const body = `${JSON.stringify(ev())}\r\n\r\n${JSON.stringify(ev())}\r\n   \n${JSON.stringify(ev())}`;
      expect((await postNdjson(t.tally, body)).body).toEqual({ accepted: 3, duplicates: 0 });
    });

    it("when a body is bigger than one COPY chunk, then it is all stored in one transaction", async () => {
      const events = Array.from({ length: 8000 }, () => ev({ properties: { pad: "y".repeat(100) } }));
      const res = await postNdjson(t.tally, ndjson(events), { gzip: true });
      expect(res.body).toEqual({ accepted: 8000, duplicates: 0 });
    });

    it("when lines are bad, then every bad line is reported with its line number and nothing is stored", async () => {
      const before = await storedCount(t.tally);
      const good = Array.from({ length: 3000 }, () => JSON.stringify(ev()));
      good[10] = "not json";
      good[1500] = JSON.stringify(ev({ meter: "nope" }));
      good[2999] = JSON.stringify({ ...ev(), value: "x" });
      const res = await postNdjson(t.tally, `${good.join("\n")}\n`);
      expect(res.status).toBe(400);
      expect(res.body.errors).toEqual([
        expect.objectContaining({ index: 10, line: 11, field: "events[10]" }),
        expect.objectContaining({ index: 1500, line: 1501, field: "events[1500].meter" }),
        expect.objectContaining({ index: 2999, line: 3000, field: "events[2999].value" }),
      ]);
      expect(await storedCount(t.tally)).toBe(before);
    });

    it("when an NDJSON body is bigger than its limit, then 413 and nothing is stored", async () => {
      const before = await storedCount(t.tally);
      const events = Array.from({ length: 20_000 }, () => ev({ properties: { pad: "z".repeat(150) } }));
      const res = await postNdjson(t.tally, ndjson(events), { gzip: true });
      expect(res.status).toBe(413);
      expect(await storedCount(t.tally)).toBe(before);
    });

    it("when a stream trickles in for longer than the meter cache lives, then it completes (no self-deadlock)", async () => {
      const url = await t.tally.listen(0, "127.0.0.1");
      const lines = Array.from({ length: 12 }, () => `${JSON.stringify(ev())}\n`);
      const status = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = http.request(
          `${url}/v1/events`,
          { method: "POST", headers: { ...admin, "Content-Type": "application/x-ndjson" } },
          (res) => {
            let body = "";
            res.on("data", (d) => {
              body += d;
            });
            res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
          },
        );
        req.on("error", reject);
        let i = 0;
        const timer = setInterval(() => {
          const line = lines[i++];
          if (line) req.write(line);
          else {
            clearInterval(timer);
            req.end();
          }
        }, 150);
      });
      expect(status.status).toBe(202);
      expect(JSON.parse(status.body)).toEqual({ accepted: 12, duplicates: 0 });
    });

    it("when a body spans several apply chunks and repeats ids across them, then dedupe spans the whole body", async () => {
      const events = Array.from({ length: 25_000 }, () => ev());
      const body = ndjson([...events, ...events.slice(0, 100)]);
      expect((await postNdjson(t.tally, body, { gzip: true })).body).toEqual({ accepted: 25_000, duplicates: 100 });
    });

    it("when a line is longer than 64 KiB, then that line is reported", async () => {
      const res = await postNdjson(
        t.tally,
        `${JSON.stringify(ev())}\n${"x".repeat(70_000)}\n${JSON.stringify(ev())}\n`,
      );
      expect(res.status).toBe(400);
      expect(res.body.errors).toEqual([
        expect.objectContaining({ index: 1, line: 2, message: "line is longer than 65536 bytes" }),
      ]);
    });
  });

  describe("receipts", () => {
    it("when an event arrived, then its receipt shows what was stored and when; otherwise 404", async () => {
      const e = ev({ value: "2.50", timestamp: "2026-11-20T10:00:00.123456Z" });
      const at = isoMinutesAgo(1);
      const res0 = await postJson(t.tally, [{ ...e, timestamp: at }]);
      expect(res0.status).toBe(202);
      const path = `/v1/events/${encodeURIComponent(customer)}/${encodeURIComponent(e.id)}`;
      const res = await request(t.tally.app).get(path).set(admin);
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({
        id: e.id,
        customer,
        meter: "calls",
        value: "2.5",
        timestamp: at.replace(".000Z", "Z"),
      });
      // When Tally received it, by its clock (a manual one here).
      expect(Date.parse(res.body.received_at)).toBe(t.clock.now().getTime());
      const missing = await request(t.tally.app)
        .get(`/v1/events/${encodeURIComponent(customer)}/never`)
        .set(admin);
      expect(missing.status).toBe(404);
    });

    it("when a read key bound to another customer asks, then 404; bound to this customer, then 200", async () => {
      const e = ev();
      await postJson(t.tally, [e]);
      const mk = async (c: string) =>
        (
          await request(t.tally.app)
            .post("/v1/api-keys")
            .set(admin)
            .send({ scopes: ["read"], customer: c })
        ).body.key;
      const path = `/v1/events/${encodeURIComponent(customer)}/${e.id}`;
      expect(
        (
          await request(t.tally.app)
            .get(path)
            .set(bearer(await mk("someone-else")))
        ).status,
      ).toBe(404);
      expect(
        (
          await request(t.tally.app)
            .get(path)
            .set(bearer(await mk(customer)))
        ).status,
      ).toBe(200);
    });
  });

  describe("customer-bound ingest keys", () => {
    it("when a bound ingest key sends events of another customer, then 403 and nothing is stored", async () => {
      const key = (
        await request(t.tally.app)
          .post("/v1/api-keys")
          .set(admin)
          .send({ scopes: ["ingest"], customer })
      ).body.key;
      const ok = await postJson(t.tally, [ev()], bearer(key));
      expect(ok.status).toBe(202);
      const res = await postJson(t.tally, [ev(), ev({ customer: "other" })], bearer(key));
      expect(res.status).toBe(403);
      expect(res.body.errors[0]).toMatchObject({ index: 1, field: "events[1].customer" });
      expect(await storedCount(t.tally, "customer_id = $1", [customer])).toBe(1);
    });
  });

  describe("metrics", () => {
    it("when batches were ingested, then accepted, duplicate and rejected counters and the histograms are exported", async () => {
      const text = (await request(t.tally.app).get("/metrics")).text;
      expect(text).toMatch(/tally_events_accepted_total \d+/);
      expect(text).toMatch(/tally_events_duplicate_total \d+/);
      expect(text).toMatch(/tally_events_rejected_total\{reason="invalid"\} \d+/);
      expect(text).toMatch(/tally_ingest_batch_events_bucket\{le="1000",format="json"\}/);
      expect(text).toMatch(/tally_ingest_batch_duration_seconds_count\{format="ndjson",outcome="committed"\}/);
    });
  });
});
