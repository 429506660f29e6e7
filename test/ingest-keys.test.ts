// The dedupe key store (src/ingest/keys.ts, rotate.ts) on both engines: a key committed before a rotation of the hot
// table, sent again after it and after the merge into the cold tier, is refused; a rotation waits for open ingest
// transactions (the boundary race); a hash shared by two keys stores both, exactly; the window is exact; and
// migration 0050 carries the keys of the old event_keys table over.
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { OpenedDb } from "../src/db/open.js";
import { maintainKeys } from "../src/ingest/rotate.js";
import { copyBatch, findEvent, KnownCustomers, writeBatch } from "../src/ingest/store.js";
import { EventChecker, type ValidEvent } from "../src/ingest/validate.js";
import { BACKENDS, migratedBefore, type TestDatabase } from "./helpers/databases.js";
import { defineMeters, postJson } from "./helpers/events.js";
import { until } from "./helpers/eventually.js";
import { admin, startTestTally, type TestTally } from "./helpers/tally.js";

let seq = 0;
const uid = (p: string) => `${p}-${++seq}-${Math.random().toString(36).slice(2, 8)}`;
const DAY = 86_400_000;

function valid(raw: { id: string; customer: string; meter: string; value?: number }[], nowMs = Date.now()) {
  const checker = new EventChecker({ aggregationOf: () => "sum", nowMs, maxAgeMs: 35 * DAY, maxFutureMs: 300_000 });
  return raw.map((e, i) => {
    const v = checker.check(e, i);
    if (!v.ok) throw new Error(JSON.stringify(v.errors));
    return v.event;
  });
}

describe.each(BACKENDS)("dedupe key store on %s", (backend) => {
  let t: TestTally;

  beforeAll(async () => {
    t = await startTestTally(backend);
    await defineMeters(t.tally, { calls: "sum" });
  });
  afterAll(() => t.close());

  const db = () => t.tally.ctx.db;
  const tiers = async (customer: string) =>
    (
      await db().query<{ tier: string; n: string }>(
        `SELECT k.tier, count(*)::text AS n FROM event_key_entries k
         JOIN (SELECT DISTINCT event_key_hash(customer_id, event_id) AS h FROM usage_events WHERE customer_id = $1) e
           USING (h)
         GROUP BY 1 ORDER BY 1`,
        [customer],
      )
    ).rows.map((r) => `${r.tier} ${r.n}`);

  it("when keys committed before a rotation are sent again after it and after the merge, then they are refused", async () => {
    const customer = uid("c");
    const events = Array.from({ length: 300 }, (_, i) => ({ id: `e-${i}`, customer, meter: "calls" }));
    expect((await postJson(t.tally, events)).body).toEqual({ accepted: 300, duplicates: 0 });
    expect(await tiers(customer)).toEqual(["hot 300"]);
    // Rotated only: the keys are in the sealed hot table.
    expect((await maintainKeys(db(), t.clock.now(), { force: true, merge: false })).rotated).toBe(true);
    expect(await tiers(customer)).toEqual(["sealed 300"]);
    const fresh = [...events.slice(0, 100), { id: "new-1", customer, meter: "calls" }];
    expect((await postJson(t.tally, fresh)).body).toEqual({ accepted: 1, duplicates: 100 });
    // Merged into the cold tier and flipped to it.
    const upkeep = await maintainKeys(db(), t.clock.now());
    expect(upkeep).toMatchObject({ rotated: false, flipped: true });
    expect(upkeep.merged_keys).toBeGreaterThanOrEqual(300);
    expect(await tiers(customer)).toEqual(["cold 300", "hot 1"]);
    expect((await postJson(t.tally, [...events, { id: "new-1", customer, meter: "calls" }])).body).toEqual({
      accepted: 0,
      duplicates: 301,
    });
    // The receipt finds an event whichever tier holds its key.
    const receipt = await request(t.tally.app).get(`/v1/events/${customer}/e-7`).set(admin);
    expect(receipt.status).toBe(200);
    expect(receipt.body).toMatchObject({ id: "e-7", customer, meter: "calls" });
    // A second round: the cold tier keeps what it had and gains the new hot keys.
    await maintainKeys(db(), t.clock.now(), { force: true });
    expect(await tiers(customer)).toEqual(["cold 301"]);
    expect((await postJson(t.tally, events.slice(0, 5))).body).toEqual({ accepted: 0, duplicates: 5 });
  });

  it("when the cold tier doubles past a bucket width, then its keys are bucketed anew and still refused", async () => {
    const customer = uid("grow");
    const events = Array.from({ length: 50 }, (_, i) => ({ id: `g-${i}`, customer, meter: "calls" }));
    expect((await postJson(t.tally, events)).body).toEqual({ accepted: 50, duplicates: 0 });
    await maintainKeys(db(), t.clock.now(), { force: true });
    const shift = async () =>
      Number(
        (
          await db().query<{ s: number }>(
            "SELECT CASE cold WHEN 0 THEN shift_0 ELSE shift_1 END AS s FROM event_key_state",
          )
        ).rows[0]?.s,
      );
    const before = await shift();
    // Keys of other events, straight into the current hot table: enough to double the cold tier.
    await db().query(
      `INSERT INTO event_keys_hot_0 (h, h2, t, r)
       SELECT event_key_hash('filler', g::text), event_key_hash2('filler', g::text), 1, event_key_second(now())
       FROM generate_series(1, 8000) g, event_key_state s WHERE s.hot = 0`,
    );
    await db().query(
      `INSERT INTO event_keys_hot_1 (h, h2, t, r)
       SELECT event_key_hash('filler', g::text), event_key_hash2('filler', g::text), 1, event_key_second(now())
       FROM generate_series(1, 8000) g, event_key_state s WHERE s.hot = 1`,
    );
    await maintainKeys(db(), t.clock.now(), { force: true });
    expect(await shift()).toBeLessThan(before);
    expect(await tiers(customer)).toEqual(["cold 50"]);
    expect((await postJson(t.tally, events)).body).toEqual({ accepted: 0, duplicates: 50 });
    const filler = (await postJson(t.tally, [{ id: "7", customer: "filler", meter: "calls" }])).body;
    expect(filler).toEqual({ accepted: 0, duplicates: 1 }); // its 128 bits are stored: the same key
  });

  it.runIf(backend === "postgres")(
    "when a rotation meets an ingest transaction still open, then it waits for it, and the same keys sent meanwhile are refused",
    async () => {
      const customer = uid("race");
      const raw = Array.from({ length: 50 }, (_, i) => ({ id: `r-${i}`, customer, meter: "calls" }));
      let commit: () => void = () => {};
      const open = new Promise<void>((resolve) => {
        commit = resolve;
      });
      let written = false;
      const first = db().transaction(async (tx) => {
        await copyBatch(tx, valid(raw), [customer], new Date());
        written = true;
        await open;
      });
      await until(
        () => written,
        (w) => w,
      );
      // Too short a wait: the rotation gives up and leaves the tables as they were.
      expect((await maintainKeys(db(), new Date(), { force: true, lockTimeoutMs: 50 })).rotated).toBe(false);
      const rotation = maintainKeys(db(), new Date(), { force: true, lockTimeoutMs: 20_000 });
      const waitingLocks = async () =>
        Number(
          (
            await db().query<{ n: string }>(
              "SELECT count(*)::text AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
            )
          ).rows[0]?.n,
        );
      await until(waitingLocks, (n) => n >= 1);
      // Sent while the rotation waits: queued behind it, then it sees the first transaction's keys.
      const again = postJson(t.tally, raw).then((res) => res);
      await until(waitingLocks, (n) => n >= 2);
      commit();
      await first;
      expect((await rotation).rotated).toBe(true);
      expect((await again).body).toEqual({ accepted: 0, duplicates: 50 });
      expect(await tiers(customer)).toEqual(["cold 50"]);
    },
  );

  it("when two keys share a hash, then both are stored once each, exactly", async () => {
    const customer = uid("collide");
    // A stored key with the h of "twin" and another h2: a stand-in for another key whose first 64 bits agree.
    for (const n of [0, 1]) {
      await db().query(
        `INSERT INTO event_keys_hot_${n} (h, h2, t, r)
         SELECT event_key_hash($1, 'twin'), event_key_hash2($1, 'twin') + 1, 1, event_key_second(now())
         FROM event_key_state WHERE hot = ${n}`,
        [customer],
      );
    }
    const twin = [{ id: "twin", customer, meter: "calls", value: 5 }];
    expect((await postJson(t.tally, twin)).body).toEqual({ accepted: 1, duplicates: 0 });
    expect((await postJson(t.tally, [...twin, { id: "other", customer, meter: "calls" }])).body).toEqual({
      accepted: 1,
      duplicates: 1,
    });
    const { rows } = await db().query<{ n: string }>(
      "SELECT count(*)::text AS n FROM event_key_collisions WHERE customer_id = $1",
      [customer],
    );
    expect(rows[0]?.n).toBe("1");
    expect((await request(t.tally.app).get(`/v1/events/${customer}/twin`).set(admin)).body).toMatchObject({
      value: "5",
    });
  });

  it("when a key is older than the window, then it no longer counts, and the merge leaves it out", async () => {
    const customer = uid("old");
    const events = valid([{ id: "o-1", customer, meter: "calls" }]);
    const known = new KnownCustomers();
    const received = new Date(Date.now() - 36 * DAY);
    expect((await writeBatch(db(), events, known, received)).stored).toBe(1);
    const now = new Date();
    expect((await writeBatch(db(), events, known, now)).stored).toBe(1);
    expect((await writeBatch(db(), events, known, now)).stored).toBe(0);
    expect(await findEvent(db(), customer, "o-1", new Date(now.getTime() - 35 * DAY))).toMatchObject({
      receivedAt: now,
    });
    await maintainKeys(db(), now, { force: true });
    await maintainKeys(db(), now, { force: true });
    const { rows } = await db().query<{ n: string }>(
      "SELECT count(*)::text AS n FROM event_key_entries WHERE r < event_key_second($1)",
      [new Date(now.getTime() - 35 * DAY)],
    );
    expect(rows[0]?.n).toBe("0");
    expect((await writeBatch(db(), events, known, now)).stored).toBe(0);
  });

  it("when some keys of a cold row pass the window, then the merge keeps exactly the others", async () => {
    const now = t.clock.now();
    const filler = (tag: string, agoDays: number) => `
      INSERT INTO event_keys_hot_0 (h, h2, t, r)
      SELECT event_key_hash('${tag}', g::text), event_key_hash2('${tag}', g::text), 1, event_key_second($1) - ${agoDays * 86_400}
      FROM generate_series(1, 2000) g, event_key_state s WHERE s.hot = 0`;
    for (const sql of [filler("older", 20), filler("newer", 0)]) {
      await db().query(sql, [now]);
      await db().query(sql.replaceAll("_hot_0", "_hot_1").replace("s.hot = 0", "s.hot = 1"), [now]);
    }
    await maintainKeys(db(), now, { force: true });
    const count = async (tag: string) =>
      Number(
        (
          await db().query<{ n: string }>(
            `SELECT count(*)::text AS n FROM event_key_entries
             WHERE tier = 'cold' AND h IN (SELECT event_key_hash($1, g::text) FROM generate_series(1, 2000) g)`,
            [tag],
          )
        ).rows[0]?.n,
      );
    expect([await count("older"), await count("newer")]).toEqual([2000, 2000]);
    // 20 days on, the older keys are 40 days old, the newer 20: one merge, rows holding both.
    await maintainKeys(db(), new Date(now.getTime() + 20 * DAY), { force: true });
    expect([await count("older"), await count("newer")]).toEqual([0, 2000]);
  });
});

describe.each(BACKENDS)("migration 0050 on %s", (backend) => {
  let database: TestDatabase;
  let opened: OpenedDb;
  afterAll(async () => {
    await opened?.db.close();
    await database?.drop();
  });

  it("when keys were stored in the old event_keys table, then after the migration their duplicates are refused", async () => {
    const start = await migratedBefore(backend, "0050");
    ({ database, opened } = start);
    const { db } = opened;
    await db.query("INSERT INTO meters (key, name, unit, aggregation) VALUES ('calls', 'calls', 'u', 'sum')", []);
    await db.query("INSERT INTO customers (id) VALUES ('c1'), ('c2')", []);
    const received = new Date(Date.now() - 3 * DAY);
    await db.query(
      `WITH g AS (
         SELECT 'c' || (g % 2 + 1) AS customer_id, 'old-' || g AS event_id,
                $1::timestamptz - g * interval '1 minute' AS ts
         FROM generate_series(1, 500) g
       ), k AS (
         INSERT INTO event_keys (customer_id, event_id, meter, ts, received_at)
         SELECT customer_id, event_id, 'calls', ts, $1 FROM g
       )
       INSERT INTO usage_events (ts, customer_id, meter, value, event_id, properties, received_at)
       SELECT ts, customer_id, 'calls', 1, event_id, NULL, $1 FROM g`,
      [received],
    );
    await start.finish();
    const raw = Array.from({ length: 500 }, (_, i) => ({
      id: `old-${i + 1}`,
      customer: `c${((i + 1) % 2) + 1}`,
      meter: "calls",
    }));
    const known = new KnownCustomers();
    const retried = valid([...raw, { id: "new-1", customer: "c1", meter: "calls" }]);
    expect((await writeBatch(db, retried as ValidEvent[], known, new Date())).stored).toBe(1);
    expect(await findEvent(db, "c2", "old-1", new Date(Date.now() - 35 * DAY))).toMatchObject({ id: "old-1" });
    const { rows } = await db.query<{ tier: string; n: string }>(
      "SELECT tier, count(*)::text AS n FROM event_key_entries GROUP BY 1 ORDER BY 1",
      [],
    );
    expect(rows).toEqual([
      { tier: "cold", n: "500" },
      { tier: "hot", n: "1" },
    ]);
    const gone = await db.query<{ t: string | null }>("SELECT to_regclass('event_keys')::text AS t", []);
    expect(gone.rows[0]?.t).toBeNull();
  });
});
