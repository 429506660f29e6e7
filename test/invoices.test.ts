// Finalized invoices and corrections, on both engines, with a manual clock moving through October → December 2026:
// drafts stay drafts during the grace time and freeze after it with gapless numbers; late events, a `last` value
// going down and a price correction reach the next draft once, as adjustment lines, however often the job runs
// and even when a run fails half-way; a final invoice never changes by a byte.
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../src/clock.js";
import { BACKENDS } from "./helpers/databases.js";
import { postJson } from "./helpers/events.js";
import { admin, startTestTally, type TestTally } from "./helpers/tally.js";

describe.each(BACKENDS)("invoices on %s", (backend) => {
  let t: TestTally;
  let clock: ManualClock;
  /** Every final invoice's text as first served, to compare byte for byte at the end. */
  const frozen = new Map<string, string>();
  const api = () => request(t.tally.app);
  const ok = async <T extends { status: number; body: unknown }>(p: PromiseLike<T>, status = 200): Promise<T> => {
    const res = await p;
    expect(res.status, JSON.stringify(res.body)).toBe(status);
    return res;
  };
  const setup = async (path: string, body: object) => {
    const res = await api().put(path).set(admin).send(body);
    expect(res.status, JSON.stringify(res.body)).toBeLessThan(300);
  };
  const ingest = async (events: object[]) => {
    const res = await postJson(t.tally, events);
    expect(res.status, JSON.stringify(res.body)).toBe(202);
  };
  let n = 0;
  const event = (customer: string, meter: string, value: number, timestamp: string) => ({
    id: `e${++n}`,
    customer,
    meter,
    value,
    timestamp,
  });
  const runJob = async () => {
    const res = await ok(api().post("/v1/jobs/finalize-invoices/run").set(admin));
    expect(res.body.summary.failed, JSON.stringify(res.body.summary.failures)).toBe(0);
    return res.body.summary as { finalized: number; adjustments: number; numbers: string[]; checked: number };
  };
  const invoices = async (query: Record<string, string>) =>
    (await ok(api().get("/v1/invoices").query(query).set(admin))).body.data as Invoice[];
  const invoiceOf = async (customer: string, period: string) => {
    const [inv, ...rest] = await invoices({ customer, period });
    expect(rest).toEqual([]);
    return inv as Invoice;
  };
  const byId = async (id: string) => ok(api().get(`/v1/invoices/${id}`).set(admin));
  const adjustmentsOf = (inv: Invoice) => inv.lines.filter((l) => l.kind === "adjustment");
  /** Every number of a year, sorted: gapless means 1..N. */
  const numbersOf = async (year: number) => {
    const { rows } = await t.tally.ctx.db.query<{ number: string }>(
      "SELECT number FROM invoices WHERE number LIKE $1 ORDER BY number",
      [`${year}-%`],
    );
    return rows.map((r) => Number(r.number.slice(5)));
  };
  const expectGapless = async (year: number) => {
    const numbers = await numbersOf(year);
    expect(numbers).toEqual(numbers.map((_, i) => i + 1));
    return numbers.length;
  };
  const remember = async (inv: Invoice) => {
    const res = await byId(inv.id);
    frozen.set(inv.id, res.text);
  };

  beforeAll(async () => {
    clock = new ManualClock("2026-10-10T12:00:00Z");
    t = await startTestTally(backend, { clock });
    await setup("/v1/meters/calls", { name: "API calls", unit: "calls", aggregation: "sum" });
    await setup("/v1/meters/seats", { name: "Seats", unit: "seats", aggregation: "last" });
    for (const plan of ["std", "fixable"]) {
      await setup(`/v1/plans/${plan}`, { name: plan, currency: "USD" });
      for (const [meter, price] of [
        ["calls", "0.01"],
        ["seats", "5"],
      ])
        await ok(
          api()
            .post(`/v1/plans/${plan}/prices`)
            .set(admin)
            .send({ meter, effective_from: "2026-01-01T00:00:00Z", model: "per_unit", unit_price: price }),
          201,
        );
    }
    await ok(
      api().post("/v1/plans/std/prices").set(admin).send({
        meter: "calls",
        effective_from: "2026-01-01T00:00:01Z",
        model: "per_unit",
        unit_price: "0.01",
        base_fee: "10",
      }),
      201,
    );
    for (const c of ["grace", "late", "neg", "chain", "ended", "crash", "price"]) {
      await setup(`/v1/customers/${c}`, {});
      await setup(`/v1/customers/${c}/subscription`, {
        plan: c === "price" ? "fixable" : "std",
        start: "2026-10-01T00:00:00Z",
      });
      await ingest([event(c, "calls", 100, "2026-10-05T10:00:00Z"), event(c, "seats", 10, "2026-10-06T10:00:00Z")]);
    }
    // A customer whose subscription ends with October: later corrections still need a draft to go to.
    await t.tally.ctx.db.query("UPDATE subscriptions SET end_at = '2026-11-01T00:00:00Z' WHERE customer_id = 'ended'");
  });
  afterAll(() => t?.close());

  it("when the period is over but the grace hour is not, then its invoices stay drafts and late events still count", async () => {
    clock.set("2026-11-01T00:30:00Z");
    await ingest([event("grace", "calls", 50, "2026-10-31T23:59:00Z")]);
    const summary = await runJob();
    expect(summary.finalized).toBe(0);
    clock.set("2026-11-01T00:59:59Z");
    expect((await runJob()).finalized).toBe(0);
    const draft = await invoiceOf("grace", "2026-10");
    expect(draft).toMatchObject({ status: "draft", number: null, finalized_at: null, total: "61.50" });
    // 150 calls × 0.01 + 10 seats × 5 + base fee 10
    const preview = await ok(api().get("/v1/customers/grace/invoice").query({ period: "2026-10" }).set(admin));
    expect(preview.body).toMatchObject({ id: draft.id, status: "draft", total: "61.50" });
  });

  it("when the grace hour is over, then the job freezes every invoice of the period with gapless numbers", async () => {
    clock.set("2026-11-01T01:00:00Z");
    const summary = await runJob();
    expect(summary.finalized).toBe(7);
    expect(await expectGapless(2026)).toBe(7);
    const inv = await invoiceOf("grace", "2026-10");
    expect(inv).toMatchObject({ status: "final", finalized_at: "2026-11-01T01:00:00Z", total: "61.50" });
    expect(inv.number).toMatch(/^2026-\d{6}$/);
    const finals = await invoices({ status: "final", period: "2026-10" });
    expect(finals.map((i) => i.customer).sort()).toEqual(["chain", "crash", "ended", "grace", "late", "neg", "price"]);
    for (const f of finals) await remember(f);
    // The invoice preview of a finalized period answers the final invoice, byte for byte.
    const preview = await ok(api().get("/v1/customers/grace/invoice").query({ period: "2026-10" }).set(admin));
    expect(preview.text).toBe(frozen.get(inv.id));
    expect((await runJob()).finalized).toBe(0);
  });

  it("when a late event arrives for a final invoice, then the next draft carries it once, however often the job runs", async () => {
    clock.set("2026-11-01T02:00:00Z");
    const october = await invoiceOf("late", "2026-10");
    await ingest([event("late", "calls", 300, "2026-10-20T08:00:00Z")]);
    expect((await runJob()).adjustments).toBe(1);
    for (let i = 0; i < 3; i++) expect((await runJob()).adjustments).toBe(0);
    const november = await invoiceOf("late", "2026-11");
    expect(november.status).toBe("draft");
    expect(adjustmentsOf(november)).toEqual([
      expect.objectContaining({ meter: "calls", quantity: "300", amount: "3.00", adjusts: october.id }),
    ]);
    expect(november).toMatchObject({ adjustments: "3.00", total: "13.00" }); // base fee 10 + the 3.00 carried
    expect((await byId(october.id)).text).toBe(frozen.get(october.id));
  });
});

interface Invoice {
  id: string;
  customer: string;
  number: string | null;
  status: string;
  total: string;
  lines: { kind: string; meter: string | null; quantity: string; amount: string; adjusts?: string }[];
}
