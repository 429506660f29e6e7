// The embedded engine's one connection under background work: a job's chain of statements lets requests in
// (PGlite answers in microtasks, so without a yield the event loop would not read a request until the job ended),
// and a scheduled refresh leaves an hour still taking events dirty — read exactly from raw events — until a run
// finds it quiet or it has waited five minutes.
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../src/clock.js";
import { inBackground } from "../src/db/priority.js";
import { RefreshPacer, refreshRollups } from "../src/rollups/refresh.js";
import { defineMeters, postJson } from "./helpers/events.js";
import { admin, startTestTally, type TestTally } from "./helpers/tally.js";

const HOUR = 3_600_000;

describe("RefreshPacer", () => {
  const t0 = Date.parse("2026-11-03T12:00:00Z");
  it.each([
    { name: "an hour that took events since the last run waits", fresh: [1], at: 0, deferred: [1] },
    { name: "an hour that did not is refreshed", fresh: [], at: 0, deferred: [] },
    { name: "an hour still taking events after five minutes of waiting is refreshed", fresh: [1], at: 5, deferred: [] },
  ])("$name", ({ fresh, at, deferred }) => {
    const pacer = new RefreshPacer();
    const hours = [t0 - HOUR, t0 - 2 * HOUR];
    const freshHours = new Set(fresh.map((k) => hours[k - 1] as number));
    pacer.defer(hours, freshHours, t0); // waiting starts at the first run that defers
    const out = pacer.defer(hours, freshHours, t0 + at * 60_000);
    expect([...out]).toEqual(deferred.map((k) => hours[k - 1]));
  });
});

describe("background work on the embedded engine", () => {
  let t: TestTally;
  const clock = new ManualClock("2026-11-03T12:30:00Z");
  beforeAll(async () => {
    t = await startTestTally("embedded", { clock });
    await defineMeters(t.tally, { calls: "sum" });
  });
  afterAll(() => t.close());

  it("when a job runs a long chain of statements, then a request is answered before the chain ends", async () => {
    const { db } = t.tally.ctx;
    let chainDone = false;
    const chain = inBackground(async () => {
      for (let i = 0; i < 3000; i++) await db.query("SELECT $1::int", [i]);
      chainDone = true;
    });
    // A request arriving while the chain runs (a timer: it needs the event loop, as a socket does).
    const answered = await new Promise<boolean>((resolve, reject) => {
      setTimeout(() => {
        request(t.tally.app)
          .get("/v1/meters")
          .set(admin)
          .then((res) => {
            expect(res.status).toBe(200);
            resolve(!chainDone);
          }, reject);
      }, 1);
    });
    await chain;
    expect(answered).toBe(true);
  });

  it("when an hour takes events run after run, then a paced refresh leaves it dirty and reads stay exact", async () => {
    const { db, engine } = t.tally.ctx;
    const pacer = new RefreshPacer();
    const total = async () => {
      const res = await request(t.tally.app)
        .get("/v1/usage")
        .query({
          customer: "paced",
          meter: "calls",
          granularity: "day",
          from: "2026-11-03T00:00:00Z",
          to: "2026-11-04T00:00:00Z",
        })
        .set(admin);
      return (res.body.data as { value: string }[]).map((p) => p.value);
    };
    const post = async (id: string) =>
      expect(
        (
          await postJson(t.tally, [
            { id, customer: "paced", meter: "calls", value: 2, timestamp: "2026-11-03T10:15:00Z" },
          ])
        ).status,
      ).toBe(202);
    await post("p1");
    const first = await refreshRollups(db, engine, clock.now(), { pacer });
    expect(first.deferred_hours).toBe(1);
    await post("p2");
    expect(await total()).toEqual(["4"]);
    const second = await refreshRollups(db, engine, clock.now(), { pacer });
    expect(second.deferred_hours).toBe(1);
    // Quiet now: the next run refreshes it.
    const third = await refreshRollups(db, engine, clock.now(), { pacer });
    expect(third.deferred_hours ?? 0).toBe(0);
    expect(third.claimed_hours).toBe(1);
    expect(await total()).toEqual(["4"]);
  });
});
