// The optimistic write path against real databases: a batch meeting keys of a concurrent, still open transaction;
// retries; half-overlapping batches at once; an NDJSON body with a conflict in one of its chunks. Always: stored =
// distinct keys, every key with its event and every event with its key, counts that add up.

import fc from "fast-check";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { distinctInKeyOrder } from "../src/ingest/batch.js";
import { copyBatch } from "../src/ingest/store.js";
import { EventChecker, type ValidEvent } from "../src/ingest/validate.js";
import { BACKENDS } from "./helpers/databases.js";
import { defineMeters, ndjson, postJson, postNdjson } from "./helpers/events.js";
import { until } from "./helpers/eventually.js";
import { admin, startTestTally, type TestTally } from "./helpers/tally.js";

let seq = 0;
const uid = (p: string) => `${p}-${++seq}-${Math.random().toString(36).slice(2, 8)}`;

describe.each(BACKENDS)("optimistic ingest on %s", (backend) => {
  let t: TestTally;

  beforeAll(async () => {
    t = await startTestTally(backend);
    await defineMeters(t.tally, { calls: "sum" });
  });
  afterAll(() => t.close());

  /** Events, keys and their agreement for one customer. */
  async function stored(customer: string) {
    const { rows } = await t.tally.ctx.db.query<Record<string, string>>(
      `SELECT (SELECT count(*) FROM usage_events WHERE customer_id = $1)::text AS events,
              (SELECT count(DISTINCT event_id) FROM usage_events WHERE customer_id = $1)::text AS distinct_events,
              (SELECT count(*) FROM event_key_entries k JOIN (
                 SELECT DISTINCT event_key_hash(customer_id, event_id) AS h FROM usage_events WHERE customer_id = $1
               ) AS e USING (h))::text AS keys,
              (SELECT count(*) FROM usage_events e
               LEFT JOIN event_key_entries k ON k.h = event_key_hash(e.customer_id, e.event_id)
                 AND k.t = event_key_second(e.ts) AND k.r = event_key_second(e.received_at)
               WHERE e.customer_id = $1 AND k.h IS NULL)::text AS events_without_key,
              (SELECT coalesce(sum(value), 0) FROM usage_events WHERE customer_id = $1)::text AS total`,
      [customer],
    );
    return rows[0] as Record<string, string>;
  }

  const conflicts = async (format: string) => {
    const text = (await request(t.tally.app).get("/metrics").set(admin)).text;
    const m = new RegExp(`tally_ingest_conflicts_total\\{format="${format}"\\} (\\d+)`).exec(text);
    return Number(m?.[1] ?? 0);
  };

  it("property: what the binary COPY stores is exactly what PostgreSQL reads from the same values as text", async () => {
    const nowMs = Date.now();
    const checker = new EventChecker({
      aggregationOf: () => "sum",
      nowMs,
      maxAgeMs: 35 * 86_400_000,
      maxFutureMs: 300_000,
    });
    const timestamp = fc
      .tuple(
        fc.integer({ min: nowMs - 30 * 86_400_000, max: nowMs }),
        fc.constantFrom("", ".5", ".12", ".999", ".1234", ".123456", ".9999995", ".0000005", ".1234565", ".999999999"),
        fc.constantFrom("Z", "+00:00", "-05:30", "+14:00", "z"),
      )
      .map(([ms, frac, tz]) => {
        const d = new Date(ms - (ms % 1000));
        const t = d.toISOString().slice(0, 19);
        if (tz === "Z" || tz === "z") return `${t}${frac}${tz}`;
        const minutes = (tz[0] === "-" ? -1 : 1) * (Number(tz.slice(1, 3)) * 60 + Number(tz.slice(4)));
        const local = new Date(d.getTime() + minutes * 60_000).toISOString().slice(0, 19);
        return `${local}${frac}${tz}`;
      });
    const value = fc.oneof(
      fc.integer({ min: -1e9, max: 1e9 }),
      fc.constantFrom("0", "1", "-1", "10000", "9999", "100000000", "0.000000001", "123456789012345678", "-0.5"),
      fc.tuple(fc.bigInt({ min: -(10n ** 9n), max: 10n ** 9n }), fc.integer({ min: 0, max: 9 })).map(([n, scale]) => {
        const s = (n < 0n ? -n : n).toString().padStart(scale + 1, "0");
        return `${n < 0n ? "-" : ""}${s.slice(0, s.length - scale)}${scale ? `.${s.slice(s.length - scale)}` : ""}`;
      }),
    );
    const text = fc.string({ unit: "grapheme", minLength: 1, maxLength: 12 });
    const raws = fc.sample(
      fc.record({
        id: text,
        customer: fc.constantFrom("c\\1", "c\t2", "cüstomer", "c😀", "plain"),
        meter: fc.constant("calls"),
        value,
        timestamp,
        properties: fc.option(fc.dictionary(fc.string({ minLength: 1, maxLength: 5 }), text, { maxKeys: 3 }), {
          nil: undefined,
        }),
      }),
      { numRuns: 2000, seed: 42 },
    );
    const events = distinctInKeyOrder(
      raws.flatMap((raw, i) => {
        const v = checker.check({ ...raw, id: `${uid("bin")}-${i}-${raw.id}` }, i);
        return v.ok ? [v.event] : [];
      }),
    );
    expect(events.length).toBeGreaterThan(1500);
    const receivedAt = new Date(nowMs - 1234);
    await t.tally.ctx.db.transaction((tx) => copyBatch(tx, events, [], receivedAt));
    const { rows } = await t.tally.ctx.db.query<{ wrong: string }>(
      `SELECT count(*)::text AS wrong
       FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) AS x(customer, id, ts, value, props)
       LEFT JOIN usage_events e ON e.customer_id = x.customer AND e.event_id = x.id
       LEFT JOIN event_key_entries k ON k.h = event_key_hash(x.customer, x.id)
       WHERE e.ts IS DISTINCT FROM x.ts::timestamptz OR k.t IS DISTINCT FROM event_key_second(x.ts::timestamptz)
          OR e.value::text IS DISTINCT FROM x.value::numeric::text
          OR e.properties IS DISTINCT FROM x.props::jsonb OR e.meter <> 'calls'
          OR e.received_at IS DISTINCT FROM $6::timestamptz OR k.r IS DISTINCT FROM event_key_second($6::timestamptz)`,
      [
        events.map((e) => e.customer),
        events.map((e) => e.id),
        events.map((e) => e.ts),
        events.map((e) => e.value),
        events.map((e) => e.properties),
        receivedAt,
      ],
    );
    expect(rows[0]?.wrong).toBe("0");
  });

  it.runIf(backend === "postgres")(
    "when a batch meets keys of a concurrent uncommitted batch, then it waits; if that commits, only the free keys are stored; if it rolls back, all are",
    async () => {
      for (const outcome of ["commit", "rollback"] as const) {
        const customer = uid("cust");
        const events = Array.from({ length: 100 }, (_, i) => ({ id: `e-${i}`, customer, meter: "calls", value: 1 }));
        // The other writer: half of the keys (every second one), value 5, in a transaction left open.
        const theirs: ValidEvent[] = events
          .filter((_, i) => i % 2 === 0)
          .map((e) => ({ ...e, value: "5", ts: new Date().toISOString(), tsMs: Date.now(), properties: null }))
          .sort((a, b) => (a.id < b.id ? -1 : 1));
        let answer: Promise<request.Response> | undefined;
        const holder = t.tally.ctx.db.transaction(async (tx) => {
          await copyBatch(tx, theirs, [customer], new Date());
          answer = postJson(t.tally, events).then((r) => r);
          await until(
            async () => {
              const { rows } = await t.tally.ctx.db.query<{ n: number }>(
                "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
              );
              return rows[0]?.n ?? 0;
            },
            (waiting) => waiting > 0,
            { message: "the batch to wait for the open transaction's keys", timeout: 20_000 },
          );
          if (outcome === "rollback") throw new Error("roll back");
        });
        if (outcome === "rollback") await expect(holder).rejects.toThrow("roll back");
        else await holder;
        const res = await (answer as Promise<request.Response>);
        expect(res.status).toBe(202);
        if (outcome === "commit") {
          expect(res.body).toEqual({ accepted: 50, duplicates: 50 });
          expect(await stored(customer)).toEqual({
            events: "100",
            distinct_events: "100",
            keys: "100",
            events_without_key: "0",
            total: String(50 * 5 + 50),
          });
        } else {
          expect(res.body).toEqual({ accepted: 100, duplicates: 0 });
          expect((await stored(customer)).total).toBe("100");
        }
      }
    },
  );

  it("when clients retry some batches (again and at once) among new ones, then every event is stored once and the counts add up", async () => {
    const customer = uid("cust");
    const batches = Array.from({ length: 40 }, (_, b) =>
      Array.from({ length: 50 }, (_, i) => ({ id: `b${b}-e${i}`, customer: `${customer}-${i % 7}`, meter: "calls" })),
    );
    // Every tenth batch goes out twice: once with the others, and again at once from another client.
    const sends = batches.flatMap((batch, b) => (b % 10 === 3 ? [batch, batch] : [batch]));
    const before = await conflicts("json");
    const results: { accepted: number; duplicates: number }[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (next < sends.length) {
          const res = await postJson(t.tally, sends[next++] as unknown[]);
          expect(res.status).toBe(202);
          results.push(res.body);
        }
      }),
    );
    // And one more retry of each, after all were acknowledged.
    for (const b of [0, 13, 39]) results.push((await postJson(t.tally, batches[b] as unknown[])).body);
    const sent = sends.length * 50 + 3 * 50;
    expect(results.reduce((s, r) => s + r.accepted, 0)).toBe(2000);
    expect(results.reduce((s, r) => s + r.duplicates, 0)).toBe(sent - 2000);
    expect(await conflicts("json")).toBeGreaterThanOrEqual(before + 3);
    let events = 0;
    for (let c = 0; c < 7; c++) {
      const s = await stored(`${customer}-${c}`);
      expect(s.events).toBe(s.distinct_events);
      expect(s.keys).toBe(s.events);
      expect(s.events_without_key).toBe("0");
      events += Number(s.events);
    }
    expect(events).toBe(2000);
  });

  it("when half-overlapping batches in different orders are posted at once, then stored = distinct keys, each with its event", async () => {
    const customer = uid("cust");
    const pool = Array.from({ length: 600 }, (_, i) => ({
      id: `e-${i}`,
      customer,
      meter: "calls",
      value: (i % 5) + 1,
    }));
    const batches = Array.from({ length: 10 }, (_, b) =>
      pool.slice(b * 50, b * 50 + 100).sort(() => Math.random() - 0.5),
    );
    const results = await Promise.all(batches.map((batch) => postJson(t.tally, batch)));
    for (const r of results) expect(r.status).toBe(202);
    const distinct = new Map(batches.flat().map((e) => [e.id, e.value]));
    expect(results.reduce((s, r) => s + r.body.accepted, 0)).toBe(distinct.size);
    expect(results.reduce((s, r) => s + r.body.duplicates, 0)).toBe(1000 - distinct.size);
    expect(await stored(customer)).toEqual({
      events: String(distinct.size),
      distinct_events: String(distinct.size),
      keys: String(distinct.size),
      events_without_key: "0",
      total: String([...distinct.values()].reduce((s, v) => s + v, 0)),
    });
  });

  it("when one chunk of a long NDJSON body meets stored keys, then only that chunk takes ON CONFLICT and the body is stored exactly", async () => {
    const customer = uid("cust");
    const events = Array.from({ length: 45_000 }, (_, i) => ({ id: `e-${i}`, customer, meter: "calls", value: 1 }));
    // Ten keys of the second chunk (events 20,000–39,999) are already stored, with value 3.
    const earlier = events.slice(30_000, 30_010).map((e) => ({ ...e, value: 3 }));
    expect((await postJson(t.tally, earlier)).body).toEqual({ accepted: 10, duplicates: 0 });
    const before = await conflicts("ndjson");
    // A repeat inside the body, within the third chunk: the first one wins there too.
    const body = ndjson([...events.slice(0, 44_000), { ...events[44_000], value: 7 }, ...events.slice(44_000)]);
    const res = await postNdjson(t.tally, body, { gzip: true });
    expect(res.body).toEqual({ accepted: 44_990, duplicates: 11 });
    expect(await conflicts("ndjson")).toBe(before + 1);
    expect(await stored(customer)).toEqual({
      events: "45000",
      distinct_events: "45000",
      keys: "45000",
      events_without_key: "0",
      total: String(44_990 + 30 + 6),
    });
  }, 180_000); // 45,000 events through gzip and COPY: 6–47 s measured on a busy 2-core machine
});
