// Invoices and credits follow each customer's billing cycle, on both engines, each test on a Tally and clock of its
// own: a customer anchored on the 17th at 09:00 UTC has one invoice per [17th 09:00, next 17th 09:00), frozen after
// that period's end + grace, with late events carried once to its next draft and its credit lines per anchored
// period; a Berlin calendar-month customer's March is [2026-02-28T23:00Z, 2026-03-31T22:00Z); a cycle changed in the
// middle of a period shortens the draft in progress and starts a new one, and both are finalized.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { BillingCalendar } from "../src/billing/calendar.js";
import { draftHorizon, draftPeriods, periodsBetween } from "../src/invoices/rules.js";
import { BACKENDS, type TestBackend } from "./helpers/databases.js";
import { ownTally } from "./helpers/own.js";

/** Plan grad: graduated, the first 1,000 calls free, then 0.01, base fee 30 (USD). Grace 2 hours. */
async function world(backend: TestBackend, now: string) {
  const w = await ownTally(backend, now, { env: { TALLY_INVOICE_GRACE: "PT2H" } });
  await w.setup("/v1/meters/calls", { name: "Calls", unit: "call", aggregation: "sum" });
  await w.setup("/v1/plans/grad", { name: "Graduated", currency: "USD" });
  await w.ok(
    w.post("/v1/plans/grad/prices", {
      meter: "calls",
      effective_from: "2026-01-01T00:00:00Z",
      model: "graduated",
      tiers: [
        { up_to: "1000", unit_price: "0" },
        { up_to: null, unit_price: "0.01" },
      ],
      base_fee: "30",
    }),
    201,
  );
  const subscribe = async (id: string, start: string, billing?: object) => {
    await w.setup(`/v1/customers/${id}`, {});
    await w.setup(`/v1/customers/${id}/subscription`, { plan: "grad", start, ...(billing ? { billing } : {}) });
  };
  // biome-ignore lint/suspicious/noExplicitAny: invoices are read field by field
  const invoices = async (query: string): Promise<any[]> => (await w.get(`/v1/invoices?${query}`)).data;
  const finalize = () => w.runJob("finalize-invoices");
  return { ...w, subscribe, invoices, finalize };
}

const ANCHORED = { interval: "month", anchor: "2026-11-17T09:00:00Z", time_zone: "UTC" };
const OCT17 = { start: "2026-10-17T09:00:00Z", end: "2026-11-17T09:00:00Z" };
const NOV17 = { start: "2026-11-17T09:00:00Z", end: "2026-12-17T09:00:00Z" };
const kinds = (doc: { lines: { kind: string; amount?: string }[] }, kind: string) =>
  doc.lines.filter((l) => l.kind === kind);

describe.each(BACKENDS)("invoices and credits per customer billing period on %s", (backend) => {
  it("when a customer is anchored on the 17th at 09:00, then its invoices, finalization, corrections and credit lines follow [17th 09:00, next 17th 09:00)", async () => {
    const { clock, ok, post, get, ingest, subscribe, invoices, finalize } = await world(
      backend,
      "2026-11-17T10:30:00Z",
    );
    // The subscription starts a month before the anchor: periods extend backwards from it.
    await subscribe("anchored", "2026-10-17T09:00:00Z", ANCHORED);
    await subscribe("credited", "2026-10-17T09:00:00Z", ANCHORED);
    const grant = (
      await ok(
        post("/v1/customers/credited/credit-grants", {
          amount: "10",
          description: "Pack",
          effective_at: "2026-11-01T00:00:00Z",
        }),
        201,
      )
    ).body;
    for (const customer of ["anchored", "credited"]) {
      await ingest([
        { customer, meter: "calls", value: 1500, timestamp: "2026-11-17T08:00:00Z" },
        { customer, meter: "calls", value: 2500, timestamp: "2026-11-17T10:00:00Z" },
      ]);
    }

    // The period starting in October is [Oct 17 09:00, Nov 17 09:00): 30 + 500 × 0.01; the one containing 10:00 on
    // the 17th: 30 + 1,500 × 0.01.
    const october = await get("/v1/customers/anchored/invoice?period=2026-10");
    expect(october).toMatchObject({ period: OCT17, total: "35.00" });
    const current = await get("/v1/customers/anchored/invoice?period=2026-11-17T10:00:00Z");
    expect(current).toMatchObject({ period: NOV17, total: "45.00" });

    // One draft per anchored period (none for [Sep 17, Oct 17): no subscription), newest first.
    const drafts = await invoices("customer=anchored");
    expect(drafts.map((d) => [d.status, d.period, d.total])).toEqual([
      ["draft", NOV17, "45.00"],
      ["draft", OCT17, "35.00"],
    ]);
    // period=YYYY-MM of a customer: its period that starts in that month.
    expect((await invoices("customer=anchored&period=2026-10")).map((d) => d.id)).toEqual([drafts[1].id]);
    expect((await invoices("customer=anchored&period=2026-11")).map((d) => d.id)).toEqual([drafts[0].id]);
    expect(await invoices("customer=anchored&period=2026-09")).toEqual([]);

    // The grant pays usage hour by hour per anchored period: 5.00 of October-17's, the 5.00 left of November-17's.
    const [creditedNov, creditedOct] = await invoices("customer=credited");
    expect(creditedOct).toMatchObject({ period: OCT17, subtotal: "35.00", credits: "5.00", total: "30.00" });
    expect(kinds(creditedOct, "credit")).toEqual([
      {
        meter: null,
        kind: "credit",
        description: `Prepaid credits: Pack (grant ${grant.id})`,
        amount: "-5.00",
        grant: grant.id,
      },
    ]);
    expect(creditedNov).toMatchObject({ period: NOV17, subtotal: "45.00", credits: "5.00", total: "40.00" });
    expect(kinds(creditedNov, "credit").map((l) => l.amount)).toEqual(["-5.00"]);

    // Before Nov 17 09:00 + 2 h nothing of these customers is frozen.
    expect((await finalize()).finalized).toBe(0);
    clock.set("2026-11-17T11:05:00Z");
    const run = await finalize();
    expect(run).toMatchObject({ finalized: 2, failed: 0 });
    const [final] = await invoices("customer=anchored&status=final");
    expect(final).toMatchObject({
      status: "final",
      period: OCT17,
      total: "35.00",
      number: expect.stringMatching(/^2026-\d{6}$/),
    });
    expect(run.numbers).toContain(final.number);
    expect(await get("/v1/customers/anchored/invoice?period=2026-10")).toEqual(final);
    const [creditedFinal] = await invoices("customer=credited&status=final");
    expect(creditedFinal).toMatchObject({ period: OCT17, credits: "5.00", total: "30.00" });
    // The period in progress is still a draft.
    expect((await invoices("customer=anchored&status=draft")).map((d) => d.period)).toEqual([NOV17]);

    // A late event inside the finalized period (08:30 on the 17th) is carried once to the next draft.
    await ingest([{ customer: "anchored", meter: "calls", value: 100, timestamp: "2026-11-17T08:30:00Z" }]);
    expect((await finalize()).adjustments).toBe(1);
    expect((await finalize()).adjustments).toBe(0);
    expect(await get(`/v1/invoices/${final.id}`)).toEqual(final);
    const [draft] = await invoices("customer=anchored&status=draft");
    expect(kinds(draft, "adjustment")).toEqual([
      {
        meter: "calls",
        kind: "adjustment",
        corrects: "usage",
        description: `Calls: correction of invoice ${final.number} (2026-10-17T09:00:00Z/2026-11-17T09:00:00Z), +100 call`,
        quantity: "100",
        amount: "1.00",
        adjusts: final.id,
        adjusts_number: final.number,
        adjusts_period: OCT17,
      },
    ]);
    expect(draft).toMatchObject({ period: NOV17, adjustments: "1.00", total: "46.00" });
  });

  it("when a customer bills Berlin calendar months, then its March invoice is [Feb 28 23:00Z, Mar 31 22:00Z) and period=2026-03 finds it", async () => {
    const { clock, ingest, subscribe, invoices, finalize, get } = await world(backend, "2026-03-20T12:00:00Z");
    await subscribe("berlin", "2026-02-01T00:00:00Z", { interval: "month", time_zone: "Europe/Berlin" });
    await subscribe("utc", "2026-02-01T00:00:00Z");
    // 00:30 on March 1st in Berlin: March's usage.
    await ingest([
      { customer: "berlin", meter: "calls", value: 1200, timestamp: "2026-02-28T23:30:00Z" },
      { customer: "utc", meter: "calls", value: 1200, timestamp: "2026-02-28T23:30:00Z" },
    ]);
    const MARCH = { start: "2026-02-28T23:00:00Z", end: "2026-03-31T22:00:00Z" };
    const [march] = await invoices("customer=berlin&period=2026-03");
    expect(march).toMatchObject({ status: "draft", period: MARCH, total: "32.00" });
    expect((await invoices("customer=berlin")).map((d) => d.period)).toEqual([
      MARCH,
      { start: "2026-01-31T23:00:00Z", end: "2026-02-28T23:00:00Z" },
    ]);
    expect((await invoices("customer=utc&period=2026-02"))[0]).toMatchObject({
      period: { start: "2026-02-01T00:00:00Z", end: "2026-03-01T00:00:00Z" },
      total: "32.00",
    });
    // Without a customer, period=YYYY-MM is the UTC month the periods start in: Berlin's March starts in February.
    const february = await invoices("period=2026-02");
    expect(february.map((d) => [d.customer, d.period.start]).sort()).toEqual([
      ["berlin", "2026-02-28T23:00:00Z"],
      ["utc", "2026-02-01T00:00:00Z"],
    ]);

    // Berlin's March is frozen at 22:00Z + 2 h on March 31st, the UTC customer's at midnight + 2 h.
    clock.set("2026-04-01T00:30:00Z");
    await finalize();
    expect((await invoices("customer=berlin&status=final&period=2026-03")).map((d) => d.total)).toEqual(["32.00"]);
    expect(await invoices("customer=utc&status=final&period=2026-03")).toEqual([]);
    const final = (await invoices("customer=berlin&period=2026-03"))[0];
    expect(await get("/v1/customers/berlin/invoice?period=2026-03")).toEqual(final);
  });

  it("when a customer's cycle changes mid-period, then the draft in progress ends at the change, the new period gets its own, and both are finalized", async () => {
    const { clock, ingest, subscribe, setup, invoices, finalize } = await world(backend, "2026-11-20T10:30:00Z");
    await subscribe("switcher", "2026-10-01T00:00:00Z");
    const before = await invoices("customer=switcher");
    expect(before.map((d) => d.period.start)).toEqual(["2026-11-01T00:00:00Z", "2026-10-01T00:00:00Z"]);
    await ingest([
      { customer: "switcher", meter: "calls", value: 1100, timestamp: "2026-11-10T00:00:00Z" },
      { customer: "switcher", meter: "calls", value: 1300, timestamp: "2026-11-20T10:10:00Z" },
    ]);
    // From 10:00 on the 20th the customer is billed from the 17th at 09:00 monthly.
    await setup("/v1/customers/switcher/subscription", {
      plan: "grad",
      start: "2026-11-20T10:00:00Z",
      billing: ANCHORED,
    });
    const SHORT = { start: "2026-11-01T00:00:00Z", end: "2026-11-20T10:00:00Z" };
    const NEW = { start: "2026-11-20T10:00:00Z", end: "2026-12-17T09:00:00Z" };
    const OCTOBER = { start: "2026-10-01T00:00:00Z", end: "2026-11-01T00:00:00Z" };
    const after = await invoices("customer=switcher&status=draft");
    expect(after.map((d) => [d.period, d.total])).toEqual([
      [NEW, "33.00"],
      [SHORT, "31.00"],
      [OCTOBER, "30.00"],
    ]);
    // The draft in progress keeps its id: it only ends earlier.
    expect(after[1].id).toBe(before[0].id);

    clock.set("2026-11-20T12:05:00Z");
    await finalize();
    const [short] = await invoices("customer=switcher&status=final&period=2026-11");
    expect(short).toMatchObject({ id: before[0].id, period: SHORT, total: "31.00" });
    expect((await invoices("customer=switcher&status=draft")).map((d) => d.period)).toEqual([NEW]);

    clock.set("2026-12-17T11:05:00Z");
    await finalize();
    const finals = await invoices("customer=switcher&status=final");
    expect(finals.map((d) => [d.period, d.total])).toEqual([
      [NEW, "33.00"],
      [SHORT, "31.00"],
      [OCTOBER, "30.00"],
    ]);
    expect((await invoices("customer=switcher&status=draft")).map((d) => d.period)).toEqual([
      { start: "2026-12-17T09:00:00Z", end: "2027-01-17T09:00:00Z" },
    ]);
  });

  it("when a cycle change is dated back past a draft's start, then that draft moves to the new period, and a final invoice of the old cycle is left out of the new periods", async () => {
    const { ingest, subscribe, setup, invoices, finalize } = await world(backend, "2026-11-20T10:30:00Z");
    await subscribe("frozen", "2026-10-01T00:00:00Z");
    await ingest([{ customer: "frozen", meter: "calls", value: 1500, timestamp: "2026-10-25T00:00:00Z" }]);
    await invoices("customer=frozen");
    expect((await finalize()).finalized).toBe(1);
    await subscribe("back", "2026-10-01T00:00:00Z");
    const [november, october] = await invoices("customer=back");
    for (const id of ["frozen", "back"]) {
      await setup(`/v1/customers/${id}/subscription`, {
        plan: "grad",
        start: "2026-10-20T00:00:00Z",
        billing: ANCHORED,
      });
    }
    const CURRENT = { start: "2026-11-17T09:00:00Z", end: "2026-12-17T09:00:00Z" };
    const back = await invoices("customer=back");
    expect(back.map((i) => [i.id, i.period])).toEqual([
      [expect.any(String), CURRENT],
      [november.id, { start: "2026-10-20T00:00:00Z", end: "2026-11-17T09:00:00Z" }],
      [october.id, { start: "2026-10-01T00:00:00Z", end: "2026-10-20T00:00:00Z" }],
    ]);
    // October is frozen as [Oct 1, Nov 1): the new period [Oct 20, Nov 17 09:00) is invoiced from November 1st on,
    // so the usage of October 25th is billed once.
    const frozen = await invoices("customer=frozen");
    expect(frozen.map((i) => [i.status, i.period, i.total])).toEqual([
      ["draft", CURRENT, "30.00"],
      ["draft", { start: "2026-11-01T00:00:00Z", end: "2026-11-17T09:00:00Z" }, "30.00"],
      ["final", { start: "2026-10-01T00:00:00Z", end: "2026-11-01T00:00:00Z" }, "35.00"],
    ]);
    expect(await finalize()).toMatchObject({ finalized: 3, failed: 0 });
    expect((await invoices("status=draft")).map((i) => [i.customer, i.period])).toEqual([
      ["back", CURRENT],
      ["frozen", CURRENT],
    ]);
  });
});

const d = (s: string) => new Date(s);
const iso = (p: { start: Date; end: Date }) => [p.start.toISOString(), p.end.toISOString()];
const calendar = (anchor: string, timeZone = "UTC", start = "2026-01-01T00:00:00Z") =>
  new BillingCalendar([
    { start: d(start), cycle: { interval: "month", intervalCount: 1, anchor: d(anchor), timeZone } },
  ]);

describe("which periods of a customer's calendar get drafts", () => {
  it.each([
    ["anchored on the 17th at 09:00", calendar("2026-11-17T09:00:00Z"), "2026-09-17T09:00:00.000Z"],
    ["Berlin calendar months", calendar("2026-01-01T00:00:00+01:00", "Europe/Berlin"), "2026-09-30T22:00:00.000Z"],
  ])("when the customer is %s, then drafts start with its period of now − 35 days", (_, cal, want) => {
    const now = d("2026-11-17T10:30:00Z");
    const from = draftHorizon(now, 35, null, cal);
    expect(from.toISOString()).toBe(want);
    const periods = periodsBetween(from, now, cal);
    expect(periods.at(-1)?.end.getTime()).toBeGreaterThan(now.getTime());
    // After a pause: the period after the one of the latest final invoice, when that is earlier.
    expect(draftHorizon(now, 35, d("2026-06-05T00:00:00Z"), cal) < from).toBe(true);
  });

  it.each([
    [
      "no final invoice",
      [],
      [
        ["2026-11-01", "2026-11-17T09"],
        ["2026-11-17T09", "2026-12-17T09"],
      ],
    ],
    [
      "one frozen for exactly a period (it keeps its place)",
      [["2026-11-01", "2026-11-17T09"]],
      [
        ["2026-11-01", "2026-11-17T09"],
        ["2026-11-17T09", "2026-12-17T09"],
      ],
    ],
    [
      "one frozen under the old cycle, reaching into the new period",
      [
        ["2026-10-01", "2026-11-01"],
        ["2026-11-01", "2026-12-01"],
      ],
      [["2026-12-01", "2026-12-17T09"]],
    ],
    [
      "one inside a period",
      [["2026-11-20", "2026-11-25"]],
      [
        ["2026-11-01", "2026-11-17T09"],
        ["2026-11-17T09", "2026-11-20"],
        ["2026-11-25", "2026-12-17T09"],
      ],
    ],
  ])("when there is %s, then the drafts' periods are %j", (_, finals, want) => {
    const t = (s: string) => d(s.length === 10 ? `${s}T00:00:00Z` : `${s}:00:00Z`);
    const period = ([a, b]: string[]) => ({ start: t(a as string), end: t(b as string) });
    const periods = [period(["2026-11-01", "2026-11-17T09"]), period(["2026-11-17T09", "2026-12-17T09"])];
    expect(draftPeriods(periods, finals.map(period)).map(iso)).toEqual(want.map(period).map(iso));
  });

  it("when final invoices cut a customer's periods anywhere, then the drafts cover exactly the rest, without overlap", () => {
    const H = 3_600_000;
    const base = Date.UTC(2026, 10, 1);
    const hours = fc.integer({ min: 0, max: 200 });
    const span = fc.tuple(hours, fc.integer({ min: 1, max: 60 })).map(([a, n]) => ({
      start: new Date(base + a * H),
      end: new Date(base + (a + n) * H),
    }));
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 6 }),
        fc.array(span, { maxLength: 3 }),
        (lengths, raw) => {
          const periods: { start: Date; end: Date }[] = [];
          let at = base;
          for (const n of lengths) {
            periods.push({ start: new Date(at), end: new Date(at + n * H) });
            at += n * H;
          }
          // Final invoices never overlap each other.
          const finals = raw.filter((f, i) => raw.every((g, j) => j >= i || g.end <= f.start || g.start >= f.end));
          const drafts = draftPeriods(periods, finals);
          const exact = (f: { start: Date; end: Date }) =>
            periods.some((p) => p.start.getTime() === f.start.getTime() && p.end.getTime() === f.end.getTime());
          for (let h = base; h < at; h += H) {
            const inDraft = drafts.filter((p) => p.start.getTime() <= h && h < p.end.getTime()).length;
            const inFinal = finals.some((f) => !exact(f) && f.start.getTime() <= h && h < f.end.getTime());
            expect(inDraft).toBe(inFinal ? 0 : 1);
          }
          for (const p of drafts) expect(p.start < p.end).toBe(true);
        },
      ),
    );
  });
});
