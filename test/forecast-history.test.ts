// The forecast's history as the database reduces it (readHistories: whole days of the daily rollup, the hours where
// the weights change from the hourly one, the first hour found by the hour) equals the figures computed hour by
// hour from the events posted (historyFigures, held to the hour-by-hour projection by forecast-units.test.ts) — on
// both engines, for periods ending mid-week, mid-hour, within the hour, at now, more than four weeks away, at a time
// zone's midnight, several ends at once (billing-cycle anchors), and with hours marked dirty and not refreshed yet.
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../src/clock.js";
import { type Histories, readHistories } from "../src/forecast/history.js";
import { historyFigures } from "../src/forecast/project.js";
import { Dec } from "../src/pricing/money.js";
import { refreshRollups } from "../src/rollups/refresh.js";
import { bothEngines } from "./helpers/both.js";
import { BACKENDS } from "./helpers/databases.js";
import { postJson } from "./helpers/events.js";
import { admin, startTestTally, type TestTally } from "./helpers/tally.js";

const HOUR = 3_600_000;
const at = (iso: string) => Date.parse(iso);
const METERS = { calls: "sum", hits: "count", peak: "max" } as const;

interface Event {
  customer: string;
  meter: keyof typeof METERS;
  ts: number;
  value: string;
}

/** A fixed pseudo-random sequence (the same events on both engines). */
function rng(seed: number) {
  let s = seed;
  return () => {
    s = (s * 1_103_515_245 + 12_345) % 2_147_483_648;
    return s / 2_147_483_648;
  };
}

/** Events before the refresh, and late ones after it (dirty hours, and hours above the watermark). */
function eventsOf(): { before: Event[]; after: Event[] } {
  const r = rng(7);
  const before: Event[] = [];
  const add = (list: Event[], customer: string, ts: number, value: string) => {
    for (const meter of Object.keys(METERS) as (keyof typeof METERS)[]) list.push({ customer, meter, ts, value });
  };
  // Steady: every third hour or so from late October on, with decimals.
  for (let h = at("2026-10-28T00:00:00Z"); h < at("2026-12-06T00:00:00Z"); h += HOUR) {
    if (r() < 0.35) add(before, "steady", h + Math.floor(r() * 59) * 60_000, `${Math.floor(r() * 900)}.125`);
  }
  // Sparse: a few events, the first of them in the middle of a day read whole.
  for (const iso of ["2026-11-25T15:20:00Z", "2026-11-25T19:00:00Z", "2026-11-30T04:10:00Z", "2026-12-03T22:59:00Z"]) {
    add(before, "sparse", at(iso), "3");
  }
  // Edge: events at the first hour of the window of now = 2026-12-12T13:30, and just before it.
  add(before, "edge", at("2026-11-14T13:00:00Z"), "5");
  add(before, "edge", at("2026-11-14T12:59:59Z"), "7");
  add(before, "edge", at("2026-11-21T13:30:00Z"), "0");
  const after: Event[] = [];
  // Late events into refreshed hours (dirty until the next refresh), and new ones above the watermark.
  add(after, "steady", at("2026-11-20T13:10:00Z"), "1000.5");
  add(after, "sparse", at("2026-11-28T08:00:00Z"), "2");
  add(after, "edge", at("2026-11-28T00:30:00Z"), "11");
  for (let h = at("2026-12-06T00:00:00Z"); h < at("2026-12-13T00:00:00Z"); h += 3 * HOUR) {
    add(after, "steady", h + 600_000, `${Math.floor(r() * 50)}`);
  }
  // Recent: history that began within the last week.
  for (let h = at("2026-12-09T10:40:00Z"); h < at("2026-12-12T12:00:00Z"); h += 5 * HOUR) add(after, "recent", h, "4");
  return { before, after };
}

/** customer → meter → figures computed hour by hour from the events (sums for `sum`, events for `count`). */
function expected(events: Event[], now: Date, endOf: (customer: string) => Date, only?: string): unknown {
  const hourly = new Map<string, Map<number, Dec>>();
  for (const e of events) {
    if (METERS[e.meter] === "max" || (only !== undefined && e.customer !== only)) continue;
    const key = `${e.customer}/${e.meter}`;
    const hours = hourly.get(key) ?? new Map<number, Dec>();
    const h = Math.floor(e.ts / HOUR) * HOUR;
    hours.set(h, (hours.get(h) ?? new Dec(0)).plus(METERS[e.meter] === "count" ? 1 : e.value));
    hourly.set(key, hours);
  }
  const out: Record<string, unknown> = {};
  for (const [key, hours] of hourly) {
    const f = historyFigures(hours, now, endOf(key.split("/")[0] as string));
    if (f.first !== null) out[key] = plain(f);
  }
  return out;
}

const plain = (f: { first: number | null; lastWeek: Dec; weighted: Record<2 | 3 | 4, Dec> }) => ({
  first: f.first === null ? null : new Date(f.first).toISOString(),
  lastWeek: f.lastWeek.toFixed(),
  weighted: [f.weighted[2].toFixed(), f.weighted[3].toFixed(), f.weighted[4].toFixed()],
});

function actual(h: Histories): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [customer, meters] of h) for (const [meter, f] of meters) out[`${customer}/${meter}`] = plain(f);
  return out;
}

describe("forecast history figures", { timeout: 240_000 }, () => {
  const engines: { backend: (typeof BACKENDS)[number]; t: TestTally }[] = [];
  const both = bothEngines(engines);
  const { before, after } = eventsOf();
  const all = [...before, ...after];

  beforeAll(async () => {
    for (const backend of BACKENDS) {
      const clock = new ManualClock("2026-12-20T00:00:00Z");
      const t = await startTestTally(backend, { clock });
      engines.push({ backend, t });
      const put = (path: string, body: object) => request(t.tally.app).put(path).set(admin).send(body);
      for (const [key, aggregation] of Object.entries(METERS)) {
        expect((await put(`/v1/meters/${key}`, { name: key, unit: "unit", aggregation })).status).toBe(201);
      }
      for (const c of ["steady", "sparse", "edge", "recent"])
        expect((await put(`/v1/customers/${c}`, {})).status).toBe(201);
      // In batches of close instants, the clock just after them (events over 35 days old are refused).
      const post = async (events: Event[]) => {
        const sorted = [...events].sort((a, b) => a.ts - b.ts);
        for (let i = 0; i < sorted.length; i += 200) {
          clock.set(new Date((sorted[Math.min(i + 199, sorted.length - 1)] as Event).ts + 60_000));
          const batch = sorted.slice(i, i + 200).map((e, n) => ({
            id: `${e.customer}-${e.meter}-${e.ts}-${i + n}`,
            customer: e.customer,
            meter: e.meter,
            timestamp: new Date(e.ts).toISOString(),
            value: e.value,
          }));
          const res = await postJson(t.tally, batch);
          expect(res.status, JSON.stringify(res.body).slice(0, 300)).toBe(202);
        }
      };
      await post(before);
      await refreshRollups(t.tally.ctx.db, t.tally.ctx.engine, new Date("2026-12-06T00:00:00Z"), { full: true });
      await post(after);
    }
  });
  afterAll(async () => {
    for (const e of engines) await e.t.close();
  });

  it.each([
    ["mid-week, the month's end 19 days on", "2026-12-12T13:30:00Z", "2027-01-01T00:00:00Z"],
    ["in under a week, mid-hour", "2026-12-12T13:30:00Z", "2026-12-15T05:36:00Z"],
    ["within the current hour's next hour", "2026-12-11T23:45:00Z", "2026-12-12T00:06:00Z"],
    ["within the current hour", "2026-12-11T23:45:00Z", "2026-12-11T23:51:00Z"],
    ["now", "2026-12-10T07:15:00Z", "2026-12-10T07:15:00Z"],
    ["more than four weeks on, now at midnight", "2026-12-12T00:00:00Z", "2027-01-31T00:00:00Z"],
    ["at a time zone's midnight (UTC-5), now at 23:00", "2026-12-06T23:00:00Z", "2027-01-01T05:00:00Z"],
  ])("when the period ends %s, then the figures are those of the hours", (_, nowIso, endIso) =>
    both(async ({ t, record }) => {
      const now = new Date(nowIso);
      const got = actual(await readHistories(t.tally.ctx.db, { now, periodEnd: new Date(endIso) }));
      expect(record("figures", got)).toEqual(expected(all, now, () => new Date(endIso)));
    }),
  );

  it("when the shares of the current and the last hour are not finite decimals, then everyone's read equals each one's", () =>
    both(async ({ t, record }) => {
      // Both reads multiply exactly in the database: the day-wise read must be the hour-wise one to the last digit
      // (here a share under 0.1 less a whole hour needs more digits than a weight has).
      const now = new Date("2026-12-12T03:55:17.123Z");
      const periodEnd = new Date("2026-12-15T19:12:49.001Z");
      const everyone = actual(await readHistories(t.tally.ctx.db, { now, periodEnd }));
      const each: Record<string, unknown> = {};
      for (const customer of ["steady", "sparse", "edge", "recent"]) {
        Object.assign(each, actual(await readHistories(t.tally.ctx.db, { customer, now, periodEnd })));
      }
      expect(Object.keys(everyone).length).toBeGreaterThan(4);
      expect(record("everyone", everyone)).toEqual(each);
    }));

  it("when customers' periods end at different instants (anchors, a half-hour time zone), then each has its own", () =>
    both(async ({ t, record }) => {
      const now = new Date("2026-12-09T18:00:00Z");
      const periodEnd = new Date("2027-01-01T00:00:00Z");
      const periodEnds = new Map([
        ["steady", new Date("2026-12-13T04:30:00Z")],
        ["sparse", new Date("2027-01-01T05:00:00Z")],
        ["recent", new Date("2026-12-31T18:30:00Z")],
        ["edge", periodEnd],
      ]);
      const endOf = (c: string) => periodEnds.get(c) ?? periodEnd;
      const got = actual(await readHistories(t.tally.ctx.db, { now, periodEnd, periodEnds }));
      expect(record("all", got)).toEqual(expected(all, now, endOf));
      const one = actual(await readHistories(t.tally.ctx.db, { customer: "steady", now, periodEnd, periodEnds }));
      expect(record("one", one)).toEqual(expected(all, now, endOf, "steady"));
    }));
});
