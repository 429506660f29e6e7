// Finalized invoices and corrections, on both engines, with a manual clock moving through October → December 2026:
// drafts stay drafts during the grace time and freeze after it with gapless numbers; late events, a `last` value
// going down and a price correction reach the next draft once, as adjustment lines, however often the job runs
// and even when a run fails half-way; a final invoice never changes by a byte.
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../src/clock.js";
import { finalizeInvoices } from "../src/invoices/finalize.js";
import { createLogger } from "../src/logger.js";
import { BACKENDS } from "./helpers/databases.js";
import { postJson } from "./helpers/events.js";
import { admin, bearer, startTestTally, type TestTally } from "./helpers/tally.js";

const silent = createLogger("silent");

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
  const adjustmentRows = async () =>
    Number((await t.tally.ctx.db.query<{ n: string }>("SELECT count(*) AS n FROM invoice_adjustments")).rows[0]?.n);
  /** Runs fn while a trigger makes a statement fail: a run that dies between computing and saving. */
  const failing = async (statement: string, table: string, condition: string, fn: () => Promise<void>) => {
    const db = t.tally.ctx.db;
    await db.query(`CREATE OR REPLACE FUNCTION test_crash() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'simulated crash'; END $$`);
    await db.query(`CREATE TRIGGER test_crash BEFORE ${statement} ON ${table} FOR EACH ROW ${condition}
      EXECUTE FUNCTION test_crash()`);
    try {
      await fn();
    } finally {
      await db.query(`DROP TRIGGER test_crash ON ${table}`);
    }
  };
  /** Another Tally on the same database (its own connection pool, as another process); on PGlite, the same one. */
  const second = async (): Promise<TestTally> =>
    backend === "postgres" ? startTestTally(backend, { clock, database: t.database }) : t;
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
    expect(preview.body.total).toBe("61.50");
    expect(preview.body.id).toBeUndefined();
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

  it("when a `last` value goes down after finalization, then the correction is negative", async () => {
    const october = await invoiceOf("neg", "2026-10");
    await ingest([event("neg", "seats", 4, "2026-10-30T00:00:00Z"), event("neg", "seats", 4, "2026-11-01T01:30:00Z")]);
    expect((await runJob()).adjustments).toBe(1);
    expect((await runJob()).adjustments).toBe(0);
    const november = await invoiceOf("neg", "2026-11");
    expect(adjustmentsOf(november)).toEqual([
      expect.objectContaining({ meter: "seats", quantity: "-6", amount: "-30.00", adjusts: october.id }),
    ]);
    // base fee 10 + 4 seats × 5 − 30.00 carried
    expect(november).toMatchObject({ adjustments: "-30.00", total: "0.00" });
  });

  it("when a price is corrected back into a final period, then the difference in amount is carried", async () => {
    const october = await invoiceOf("price", "2026-10");
    expect(october.total).toBe("51.00");
    await ok(
      api()
        .post("/v1/plans/fixable/prices")
        .set(admin)
        .send({ meter: "calls", effective_from: "2026-10-01T00:00:00Z", model: "per_unit", unit_price: "0.005" }),
      201,
    );
    expect((await runJob()).adjustments).toBe(1);
    expect((await runJob()).adjustments).toBe(0);
    const november = await invoiceOf("price", "2026-11");
    expect(adjustmentsOf(november)).toEqual([
      expect.objectContaining({ meter: "calls", quantity: "0", amount: "-0.50", adjusts: october.id }),
    ]);
    expect((await byId(october.id)).text).toBe(frozen.get(october.id));
  });

  it("when the subscription ended with the final period, then a draft is made for the correction alone", async () => {
    expect(await invoices({ customer: "ended", period: "2026-11" })).toEqual([]);
    const october = await invoiceOf("ended", "2026-10");
    await ingest([event("ended", "calls", 200, "2026-10-25T00:00:00Z")]);
    expect((await runJob()).adjustments).toBe(1);
    const november = await invoiceOf("ended", "2026-11");
    expect(november).toMatchObject({ status: "draft", currency: "USD", adjustments: "2.00", total: "2.00" });
    expect(november.lines).toEqual([
      expect.objectContaining({ kind: "adjustment", meter: "calls", quantity: "200", adjusts: october.id }),
    ]);
  });

  it("when a run fails between computing a correction and saving it, then the next run carries it, once", async () => {
    await ingest([event("crash", "calls", 10, "2026-10-28T00:00:00Z")]);
    await failing("INSERT", "invoice_adjustments", "", async () => {
      const failed = await ok(api().post("/v1/jobs/finalize-invoices/run").set(admin));
      expect(failed.body.summary).toMatchObject({ adjustments: 0, failed: 1 });
      expect(failed.body.summary.failures[0]).toMatchObject({ customer: "crash", step: "correct" });
    });
    expect(adjustmentsOf(await invoiceOf("crash", "2026-11"))).toEqual([]);
    expect((await runJob()).adjustments).toBe(1);
    expect((await runJob()).adjustments).toBe(0);
    expect(adjustmentsOf(await invoiceOf("crash", "2026-11"))).toEqual([
      expect.objectContaining({ meter: "calls", quantity: "10", amount: "0.10" }),
    ]);
  });

  it("when two processes run the job and its steps at once while late events arrive, then each difference is carried once", async () => {
    const other = await second();
    try {
      await ingest([
        event("chain", "calls", 20, "2026-10-29T00:00:00Z"),
        event("grace", "calls", 5, "2026-10-29T00:00:00Z"),
      ]);
      const before = await adjustmentRows();
      const runs = await Promise.all([
        finalizeInvoices(t.tally.ctx.invoices, silent),
        finalizeInvoices(other.tally.ctx.invoices, silent),
        ok(api().post("/v1/jobs/finalize-invoices/run").set(admin)),
        ok(request(other.tally.app).post("/v1/jobs/finalize-invoices/run").set(admin)),
      ]);
      const added = runs.map((r) => ("body" in r ? r.body.summary : r).adjustments as number);
      expect(added.reduce((a, b) => a + b, 0)).toBe(2);
      expect((await adjustmentRows()) - before).toBe(2);
      expect((await runJob()).adjustments).toBe(0);
      for (const c of ["chain", "grace"]) expect(adjustmentsOf(await invoiceOf(c, "2026-11"))).toHaveLength(1);
    } finally {
      if (other !== t) await other.close();
    }
  });

  it("when the next period's grace is over, then drafts with adjustments freeze with them, numbers stay gapless through a failed finalization", async () => {
    clock.set("2026-12-01T01:00:00Z");
    const count = (await invoices({ status: "draft", period: "2026-11" })).length;
    expect(count).toBe(7);
    const numbered = await expectGapless(2026);
    await failing("UPDATE", "invoices", "WHEN (OLD.customer_id = 'crash')", async () => {
      const res = await ok(api().post("/v1/jobs/finalize-invoices/run").set(admin));
      expect(res.body.summary).toMatchObject({ finalized: count - 1, failed: 1 });
    });
    expect(await expectGapless(2026)).toBe(numbered + count - 1);
    expect((await invoiceOf("crash", "2026-11")).status).toBe("draft");
    const last = await runJob();
    expect(last.finalized).toBe(1);
    expect(await expectGapless(2026)).toBe(numbered + count);
    expect((await invoiceOf("crash", "2026-11")).number).toBe(last.numbers[0]);
    for (const inv of await invoices({ status: "final", period: "2026-11" })) await remember(inv);
    const late = await invoiceOf("late", "2026-11");
    expect(late).toMatchObject({ status: "final", adjustments: "3.00", total: "13.00" });
    expect(adjustmentsOf(late)).toHaveLength(1);
    expect(await invoiceOf("ended", "2026-11")).toMatchObject({ status: "final", total: "2.00" });
    // No December draft for a customer whose subscription ended and has nothing to correct.
    expect(await invoices({ customer: "ended", period: "2026-12" })).toEqual([]);
  });

  it("when a final invoice that carried an adjustment is itself corrected, and its predecessor again, then both go to the next draft", async () => {
    clock.set("2026-12-01T02:00:00Z");
    const october = await invoiceOf("chain", "2026-10");
    const november = await invoiceOf("chain", "2026-11");
    expect(adjustmentsOf(november)).toEqual([
      expect.objectContaining({ adjusts: october.id, quantity: "20", amount: "0.20" }),
    ]);
    await ingest([
      event("chain", "calls", 7, "2026-11-25T00:00:00Z"),
      event("chain", "calls", 40, "2026-10-30T00:00:00Z"),
    ]);
    expect((await runJob()).adjustments).toBe(2);
    expect((await runJob()).adjustments).toBe(0);
    const december = await invoiceOf("chain", "2026-12");
    expect(adjustmentsOf(december)).toEqual([
      expect.objectContaining({ adjusts: october.id, quantity: "40", amount: "0.40" }),
      expect.objectContaining({ adjusts: november.id, quantity: "7", amount: "0.07" }),
    ]);
    for (const id of [october.id, november.id]) expect((await byId(id)).text).toBe(frozen.get(id));
  });

  it("when many drafts are frozen by two processes at once at New Year, then the new year's numbers start at 1 with no gap", async () => {
    for (let i = 0; i < 12; i++) {
      await setup(`/v1/customers/many-${i}`, {});
      await setup(`/v1/customers/many-${i}/subscription`, { plan: "std", start: "2026-12-01T00:00:00Z" });
    }
    clock.set("2027-01-01T01:00:00Z");
    const other = await second();
    try {
      const runs = await Promise.all([
        finalizeInvoices(t.tally.ctx.invoices, silent),
        finalizeInvoices(other.tally.ctx.invoices, silent),
        finalizeInvoices(t.tally.ctx.invoices, silent),
        finalizeInvoices(other.tally.ctx.invoices, silent),
      ]);
      const given = runs.flatMap((r) => r.numbers);
      expect(new Set(given).size).toBe(given.length);
      expect(given.length).toBe(await expectGapless(2027));
      // December: the twelve new customers and six of the first seven (not the one whose subscription ended).
      expect(given.length).toBe(12 + 6);
      expect(await expectGapless(2026)).toBe(7 + 7);
      for (const inv of await invoices({ status: "final", period: "2026-12" })) await remember(inv);
    } finally {
      if (other !== t) await other.close();
    }
  });

  it("when a key is bound to a customer, then it sees that customer's invoices only", async () => {
    const key = (
      await ok(
        api()
          .post("/v1/api-keys")
          .set(admin)
          .send({ scopes: ["read"], customer: "late" }),
        201,
      )
    ).body.key as string;
    const mine = await ok(api().get("/v1/invoices").set(bearer(key)));
    expect(new Set(mine.body.data.map((i: Invoice) => i.customer))).toEqual(new Set(["late"]));
    expect(mine.body.data.map((i: Invoice) => i.status)).toEqual(["draft", "final", "final", "final"]);
    await ok(api().get("/v1/invoices").query({ customer: "grace" }).set(bearer(key)), 404);
    const theirs = await invoiceOf("grace", "2026-10");
    await ok(api().get(`/v1/invoices/${theirs.id}`).set(bearer(key)), 404);
    await ok(api().get(`/v1/invoices/${mine.body.data[1].id}`).set(bearer(key)));
    await ok(api().get("/v1/invoices/in_nope").set(admin), 404);
    await ok(api().get("/v1/invoices").query({ status: "paid" }).set(admin), 400);
  });

  it("when everything above has happened, then every final invoice is byte for byte what it was when frozen", async () => {
    expect(frozen.size).toBe(7 + 7 + 18);
    for (const [id, text] of frozen) expect((await byId(id)).text, id).toBe(text);
    await expect(t.tally.ctx.db.query("UPDATE invoices SET total = 0 WHERE status = 'final'")).rejects.toThrow(/final/);
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
