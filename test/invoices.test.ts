// Finalized invoices and corrections, on both engines, each test on a Tally of its own with its own manual clock
// moving through October → December 2026 (and into 2027): drafts stay drafts during the grace time and freeze after
// it with gapless numbers; late events, a `last` value going down and a price correction reach the next draft once,
// as adjustment lines, however often the job runs and even when a run fails half-way; a final invoice never changes
// by a byte.
import request from "supertest";
import { describe, expect, it } from "vitest";
import { finalizeInvoices } from "../src/invoices/finalize.js";
import { createLogger } from "../src/logger.js";
import { BACKENDS, type TestBackend } from "./helpers/databases.js";
import { ownTally } from "./helpers/own.js";
import { admin, bearer, startTestTally, type TestTally } from "./helpers/tally.js";

const silent = createLogger("silent");

interface Invoice {
  id: string;
  customer: string;
  number: string | null;
  status: string;
  total: string;
  lines: { kind: string; meter: string | null; quantity: string; amount: string; adjusts?: string }[];
}

interface RunSummary {
  finalized: number;
  adjustments: number;
  numbers: string[];
  checked: number;
}

const adjustmentsOf = (inv: Invoice) => inv.lines.filter((l) => l.kind === "adjustment");

/**
 * A test's own Tally at `now` (default 10 October 2026): meters calls (sum) and seats (last); plan std prices calls
 * at 0.01 with a base fee of 10 and seats at 5; plan fixable the same without the base fee (its price is corrected).
 */
async function world(backend: TestBackend, now = "2026-10-10T12:00:00Z") {
  const w = await ownTally(backend, now);
  const { t, clock, ok, api, setup } = w;
  await setup("/v1/meters/calls", { name: "API calls", unit: "calls", aggregation: "sum" });
  await setup("/v1/meters/seats", { name: "Seats", unit: "seats", aggregation: "last" });
  const price = (plan: string, body: object) => ok(w.post(`/v1/plans/${plan}/prices`, body), 201);
  for (const plan of ["std", "fixable"]) {
    await setup(`/v1/plans/${plan}`, { name: plan, currency: "USD" });
    for (const [meter, unit_price] of [
      ["calls", "0.01"],
      ["seats", "5"],
    ])
      await price(plan, { meter, effective_from: "2026-01-01T00:00:00Z", model: "per_unit", unit_price });
  }
  await price("std", {
    meter: "calls",
    effective_from: "2026-01-01T00:00:01Z",
    model: "per_unit",
    unit_price: "0.01",
    base_fee: "10",
  });

  const event = (customer: string, meter: string, value: number, timestamp: string) => ({
    customer,
    meter,
    value,
    timestamp,
  });
  /** Subscribed from 1 October (or `start`); with October's usage: 100 calls and 10 seats (unless `idle`). */
  const customer = async (id: string, opts: { plan?: string; start?: string; idle?: boolean } = {}) => {
    await setup(`/v1/customers/${id}`, {});
    await setup(`/v1/customers/${id}/subscription`, {
      plan: opts.plan ?? "std",
      start: opts.start ?? "2026-10-01T00:00:00Z",
    });
    if (!opts.idle)
      await w.ingest([event(id, "calls", 100, "2026-10-05T10:00:00Z"), event(id, "seats", 10, "2026-10-06T10:00:00Z")]);
  };
  /** The subscription ends at `at` (no API for that yet: the row is what a cancellation leaves). */
  const endSubscription = (id: string, at: string) =>
    t.tally.ctx.db.query("UPDATE subscriptions SET end_at = $2 WHERE customer_id = $1", [id, at]);
  const runJob = async () => {
    const res = await ok(w.post("/v1/jobs/finalize-invoices/run"));
    expect(res.body.summary.failed, JSON.stringify(res.body.summary.failures)).toBe(0);
    return res.body.summary as RunSummary;
  };
  const invoices = async (query: Record<string, string>) => (await w.get("/v1/invoices", query)).data as Invoice[];
  const invoiceOf = async (id: string, period: string) => {
    const [inv, ...rest] = await invoices({ customer: id, period });
    expect(rest).toEqual([]);
    return inv as Invoice;
  };
  const textOf = async (id: string) => (await ok(api().get(`/v1/invoices/${id}`).set(admin))).text;
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
  /** Every final invoice of a period, by id, with its text as first served. */
  const freeze = async (period: string) => {
    const frozen = new Map<string, string>();
    for (const f of await invoices({ status: "final", period })) frozen.set(f.id, await textOf(f.id));
    return frozen;
  };
  /** At the end of October's grace hour, the job freezes October. */
  const finalizeOctober = async () => {
    clock.set("2026-11-01T01:00:00Z");
    const summary = await runJob();
    return { summary, frozen: await freeze("2026-10") };
  };
  return {
    ...w,
    event,
    customer,
    endSubscription,
    runJob,
    invoices,
    invoiceOf,
    textOf,
    expectGapless,
    adjustmentRows,
    failing,
    second,
    freeze,
    finalizeOctober,
  };
}

describe.each(BACKENDS)("invoices on %s", (backend) => {
  it("when the period is over but the grace hour is not, then its invoices stay drafts and late events still count", async () => {
    const w = await world(backend);
    await w.customer("grace");
    w.clock.set("2026-11-01T00:30:00Z");
    await w.ingest([w.event("grace", "calls", 50, "2026-10-31T23:59:00Z")]);
    expect((await w.runJob()).finalized).toBe(0);
    w.clock.set("2026-11-01T00:59:59Z");
    expect((await w.runJob()).finalized).toBe(0);
    const draft = await w.invoiceOf("grace", "2026-10");
    expect(draft).toMatchObject({ status: "draft", number: null, finalized_at: null, total: "61.50" });
    // 150 calls × 0.01 + 10 seats × 5 + base fee 10
    const preview = await w.get("/v1/customers/grace/invoice", { period: "2026-10" });
    expect(preview.total).toBe("61.50");
    expect(preview.id).toBeUndefined();
  });

  it("when the grace hour is over, then the job freezes every invoice of the period with gapless numbers", async () => {
    const w = await world(backend);
    for (const c of ["grace", "late", "neg"]) await w.customer(c);
    await w.customer("price", { plan: "fixable" });
    // An event of the period's last minute, accepted during the grace hour: it is on the final invoice.
    w.clock.set("2026-11-01T00:30:00Z");
    await w.ingest([w.event("grace", "calls", 50, "2026-10-31T23:59:00Z")]);
    const { summary, frozen } = await w.finalizeOctober();
    expect(summary.finalized).toBe(4);
    expect(await w.expectGapless(2026)).toBe(4);
    const inv = await w.invoiceOf("grace", "2026-10");
    expect(inv).toMatchObject({ status: "final", finalized_at: "2026-11-01T01:00:00Z", total: "61.50" });
    expect(inv.number).toMatch(/^2026-\d{6}$/);
    const finals = await w.invoices({ status: "final", period: "2026-10" });
    expect(finals.map((i) => i.customer).sort()).toEqual(["grace", "late", "neg", "price"]);
    // The invoice preview of a finalized period answers the final invoice, byte for byte.
    const preview = await w.ok(w.api().get("/v1/customers/grace/invoice").query({ period: "2026-10" }).set(admin));
    expect(preview.text).toBe(frozen.get(inv.id));
    expect((await w.runJob()).finalized).toBe(0);
  });

  it("when a late event arrives for a final invoice, then the next draft carries it once, however often the job runs", async () => {
    const w = await world(backend);
    await w.customer("late");
    const { frozen } = await w.finalizeOctober();
    w.clock.set("2026-11-01T02:00:00Z");
    const october = await w.invoiceOf("late", "2026-10");
    await w.ingest([w.event("late", "calls", 300, "2026-10-20T08:00:00Z")]);
    expect((await w.runJob()).adjustments).toBe(1);
    for (let i = 0; i < 3; i++) expect((await w.runJob()).adjustments).toBe(0);
    const november = await w.invoiceOf("late", "2026-11");
    expect(november.status).toBe("draft");
    expect(adjustmentsOf(november)).toEqual([
      expect.objectContaining({ meter: "calls", quantity: "300", amount: "3.00", adjusts: october.id }),
    ]);
    expect(november).toMatchObject({ adjustments: "3.00", total: "13.00" }); // base fee 10 + the 3.00 carried
    expect(await w.textOf(october.id)).toBe(frozen.get(october.id));
  });

  it("when a `last` value goes down after finalization, then the correction is negative", async () => {
    const w = await world(backend);
    await w.customer("neg");
    await w.finalizeOctober();
    w.clock.set("2026-11-01T02:00:00Z");
    const october = await w.invoiceOf("neg", "2026-10");
    await w.ingest([
      w.event("neg", "seats", 4, "2026-10-30T00:00:00Z"),
      w.event("neg", "seats", 4, "2026-11-01T01:30:00Z"),
    ]);
    expect((await w.runJob()).adjustments).toBe(1);
    expect((await w.runJob()).adjustments).toBe(0);
    const november = await w.invoiceOf("neg", "2026-11");
    expect(adjustmentsOf(november)).toEqual([
      expect.objectContaining({ meter: "seats", quantity: "-6", amount: "-30.00", adjusts: october.id }),
    ]);
    // base fee 10 + 4 seats × 5 − 30.00 carried
    expect(november).toMatchObject({ adjustments: "-30.00", total: "0.00" });
  });

  it("when a price is corrected back into a final period, then the difference in amount is carried", async () => {
    const w = await world(backend);
    await w.customer("price", { plan: "fixable" });
    const { frozen } = await w.finalizeOctober();
    w.clock.set("2026-11-01T02:00:00Z");
    const october = await w.invoiceOf("price", "2026-10");
    expect(october.total).toBe("51.00");
    await w.ok(
      w.post("/v1/plans/fixable/prices", {
        meter: "calls",
        effective_from: "2026-10-01T00:00:00Z",
        model: "per_unit",
        unit_price: "0.005",
      }),
      201,
    );
    expect((await w.runJob()).adjustments).toBe(1);
    expect((await w.runJob()).adjustments).toBe(0);
    const november = await w.invoiceOf("price", "2026-11");
    expect(adjustmentsOf(november)).toEqual([
      expect.objectContaining({ meter: "calls", quantity: "0", amount: "-0.50", adjusts: october.id }),
    ]);
    expect(await w.textOf(october.id)).toBe(frozen.get(october.id));
  });

  it("when the subscription ended with the final period, then a draft is made for the correction alone", async () => {
    const w = await world(backend);
    await w.customer("ended");
    await w.endSubscription("ended", "2026-11-01T00:00:00Z");
    await w.finalizeOctober();
    w.clock.set("2026-11-01T02:00:00Z");
    expect(await w.invoices({ customer: "ended", period: "2026-11" })).toEqual([]);
    const october = await w.invoiceOf("ended", "2026-10");
    await w.ingest([w.event("ended", "calls", 200, "2026-10-25T00:00:00Z")]);
    expect((await w.runJob()).adjustments).toBe(1);
    const november = await w.invoiceOf("ended", "2026-11");
    expect(november).toMatchObject({ status: "draft", currency: "USD", adjustments: "2.00", total: "2.00" });
    expect(november.lines).toEqual([
      expect.objectContaining({ kind: "adjustment", meter: "calls", quantity: "200", adjusts: october.id }),
    ]);
  });

  it("when a run fails between computing a correction and saving it, then the next run carries it, once", async () => {
    const w = await world(backend);
    await w.customer("crash");
    await w.finalizeOctober();
    w.clock.set("2026-11-01T02:00:00Z");
    await w.ingest([w.event("crash", "calls", 10, "2026-10-28T00:00:00Z")]);
    await w.failing("INSERT", "invoice_adjustments", "", async () => {
      const failed = await w.ok(w.post("/v1/jobs/finalize-invoices/run"));
      expect(failed.body.summary).toMatchObject({ adjustments: 0, failed: 1 });
      expect(failed.body.summary.failures[0]).toMatchObject({ customer: "crash", step: "correct" });
    });
    expect(adjustmentsOf(await w.invoiceOf("crash", "2026-11"))).toEqual([]);
    expect((await w.runJob()).adjustments).toBe(1);
    expect((await w.runJob()).adjustments).toBe(0);
    expect(adjustmentsOf(await w.invoiceOf("crash", "2026-11"))).toEqual([
      expect.objectContaining({ meter: "calls", quantity: "10", amount: "0.10" }),
    ]);
  });

  it("when two processes run the job and its steps at once while late events arrive, then each difference is carried once", async () => {
    const w = await world(backend);
    for (const c of ["chain", "grace"]) await w.customer(c);
    await w.finalizeOctober();
    w.clock.set("2026-11-01T02:00:00Z");
    const other = await w.second();
    try {
      await w.ingest([
        w.event("chain", "calls", 20, "2026-10-29T00:00:00Z"),
        w.event("grace", "calls", 5, "2026-10-29T00:00:00Z"),
      ]);
      const before = await w.adjustmentRows();
      const runs = await Promise.all([
        finalizeInvoices(w.t.tally.ctx.invoices, silent),
        finalizeInvoices(other.tally.ctx.invoices, silent),
        w.ok(w.post("/v1/jobs/finalize-invoices/run")),
        w.ok(request(other.tally.app).post("/v1/jobs/finalize-invoices/run").set(admin)),
      ]);
      const added = runs.map((r) => ("body" in r ? r.body.summary : r).adjustments as number);
      expect(added.reduce((a, b) => a + b, 0)).toBe(2);
      expect((await w.adjustmentRows()) - before).toBe(2);
      expect((await w.runJob()).adjustments).toBe(0);
      for (const c of ["chain", "grace"]) expect(adjustmentsOf(await w.invoiceOf(c, "2026-11"))).toHaveLength(1);
    } finally {
      if (other !== w.t) await other.close();
    }
  });

  it("when the next period's grace is over, then drafts with adjustments freeze with them, numbers stay gapless through a failed finalization", async () => {
    const w = await world(backend);
    for (const c of ["late", "ended", "crash", "plain"]) await w.customer(c);
    await w.endSubscription("ended", "2026-11-01T00:00:00Z");
    await w.finalizeOctober();
    // November: a late event for `late`, a correction for `ended` (whose November draft holds nothing else).
    w.clock.set("2026-11-01T02:00:00Z");
    await w.ingest([
      w.event("late", "calls", 300, "2026-10-20T08:00:00Z"),
      w.event("ended", "calls", 200, "2026-10-25T00:00:00Z"),
    ]);
    expect((await w.runJob()).adjustments).toBe(2);

    w.clock.set("2026-12-01T01:00:00Z");
    const count = (await w.invoices({ status: "draft", period: "2026-11" })).length;
    expect(count).toBe(4);
    const numbered = await w.expectGapless(2026);
    expect(numbered).toBe(4);
    await w.failing("UPDATE", "invoices", "WHEN (OLD.customer_id = 'crash')", async () => {
      const res = await w.ok(w.post("/v1/jobs/finalize-invoices/run"));
      expect(res.body.summary).toMatchObject({ finalized: count - 1, failed: 1 });
    });
    expect(await w.expectGapless(2026)).toBe(numbered + count - 1);
    expect((await w.invoiceOf("crash", "2026-11")).status).toBe("draft");
    const last = await w.runJob();
    expect(last.finalized).toBe(1);
    expect(await w.expectGapless(2026)).toBe(numbered + count);
    expect((await w.invoiceOf("crash", "2026-11")).number).toBe(last.numbers[0]);
    const late = await w.invoiceOf("late", "2026-11");
    expect(late).toMatchObject({ status: "final", adjustments: "3.00", total: "13.00" });
    expect(adjustmentsOf(late)).toHaveLength(1);
    expect(await w.invoiceOf("ended", "2026-11")).toMatchObject({ status: "final", total: "2.00" });
    // No December draft for a customer whose subscription ended and has nothing to correct.
    expect(await w.invoices({ customer: "ended", period: "2026-12" })).toEqual([]);
  });

  it("when a final invoice that carried an adjustment is itself corrected, and its predecessor again, then both go to the next draft", async () => {
    const w = await world(backend);
    await w.customer("chain");
    const october = await w.finalizeOctober();
    w.clock.set("2026-11-01T02:00:00Z");
    await w.ingest([w.event("chain", "calls", 20, "2026-10-29T00:00:00Z")]);
    expect((await w.runJob()).adjustments).toBe(1);
    w.clock.set("2026-12-01T01:00:00Z");
    expect((await w.runJob()).finalized).toBe(1);
    const frozen = new Map([...october.frozen, ...(await w.freeze("2026-11"))]);

    w.clock.set("2026-12-01T02:00:00Z");
    const oct = await w.invoiceOf("chain", "2026-10");
    const nov = await w.invoiceOf("chain", "2026-11");
    expect(adjustmentsOf(nov)).toEqual([expect.objectContaining({ adjusts: oct.id, quantity: "20", amount: "0.20" })]);
    await w.ingest([
      w.event("chain", "calls", 7, "2026-11-25T00:00:00Z"),
      w.event("chain", "calls", 40, "2026-10-30T00:00:00Z"),
    ]);
    expect((await w.runJob()).adjustments).toBe(2);
    expect((await w.runJob()).adjustments).toBe(0);
    const december = await w.invoiceOf("chain", "2026-12");
    expect(adjustmentsOf(december)).toEqual([
      expect.objectContaining({ adjusts: oct.id, quantity: "40", amount: "0.40" }),
      expect.objectContaining({ adjusts: nov.id, quantity: "7", amount: "0.07" }),
    ]);
    expect(frozen.size).toBe(2);
    for (const [id, text] of frozen) expect(await w.textOf(id), id).toBe(text);
  });

  it("when many drafts are frozen by two processes at once at New Year, then the new year's numbers start at 1 with no gap", async () => {
    const w = await world(backend, "2026-11-10T12:00:00Z");
    // November, frozen in 2026: one subscription that goes on, one that ends with November.
    for (const c of ["going", "ended"]) await w.customer(c, { start: "2026-11-01T00:00:00Z", idle: true });
    await w.endSubscription("ended", "2026-12-01T00:00:00Z");
    w.clock.set("2026-12-01T01:00:00Z");
    expect((await w.runJob()).finalized).toBe(2);
    w.clock.set("2026-12-10T12:00:00Z");
    for (let i = 0; i < 12; i++) await w.customer(`many-${i}`, { start: "2026-12-01T00:00:00Z", idle: true });

    w.clock.set("2027-01-01T01:00:00Z");
    const other = await w.second();
    try {
      const runs = await Promise.all([
        finalizeInvoices(w.t.tally.ctx.invoices, silent),
        finalizeInvoices(other.tally.ctx.invoices, silent),
        finalizeInvoices(w.t.tally.ctx.invoices, silent),
        finalizeInvoices(other.tally.ctx.invoices, silent),
      ]);
      const given = runs.flatMap((r) => r.numbers);
      expect(new Set(given).size).toBe(given.length);
      expect(given.length).toBe(await w.expectGapless(2027));
      // December: the twelve new customers and the one still subscribed (not the one whose subscription ended).
      expect(given.length).toBe(12 + 1);
      expect(await w.expectGapless(2026)).toBe(2);
    } finally {
      if (other !== w.t) await other.close();
    }
  });

  it("when a key is bound to a customer, then it sees that customer's invoices only", async () => {
    const w = await world(backend);
    for (const c of ["late", "grace"]) await w.customer(c);
    await w.finalizeOctober();
    const key = (await w.ok(w.post("/v1/api-keys", { scopes: ["read"], customer: "late" }), 201)).body.key as string;
    const mine = await w.ok(w.api().get("/v1/invoices").set(bearer(key)));
    expect(new Set(mine.body.data.map((i: Invoice) => i.customer))).toEqual(new Set(["late"]));
    expect(mine.body.data.map((i: Invoice) => i.status)).toEqual(["draft", "final"]);
    await w.ok(w.api().get("/v1/invoices").query({ customer: "grace" }).set(bearer(key)), 404);
    const theirs = await w.invoiceOf("grace", "2026-10");
    await w.ok(w.api().get(`/v1/invoices/${theirs.id}`).set(bearer(key)), 404);
    await w.ok(w.api().get(`/v1/invoices/${mine.body.data[1].id}`).set(bearer(key)));
    await w.ok(w.api().get("/v1/invoices/in_nope").set(admin), 404);
    await w.ok(w.api().get("/v1/invoices").query({ status: "paid" }).set(admin), 400);
  });

  it("when late events, a falling `last` value and a price correction follow finalization and the next period freezes too, then every final invoice is byte for byte what it was when frozen", async () => {
    const w = await world(backend);
    for (const c of ["late", "neg", "chain"]) await w.customer(c);
    await w.customer("price", { plan: "fixable" });
    const { frozen } = await w.finalizeOctober();
    w.clock.set("2026-11-01T02:00:00Z");
    await w.ingest([
      w.event("late", "calls", 300, "2026-10-20T08:00:00Z"),
      w.event("neg", "seats", 4, "2026-10-30T00:00:00Z"),
      w.event("chain", "calls", 20, "2026-10-29T00:00:00Z"),
    ]);
    await w.ok(
      w.post("/v1/plans/fixable/prices", {
        meter: "calls",
        effective_from: "2026-10-01T00:00:00Z",
        model: "per_unit",
        unit_price: "0.005",
      }),
      201,
    );
    expect((await w.runJob()).adjustments).toBe(4);
    w.clock.set("2026-12-01T01:00:00Z");
    expect((await w.runJob()).finalized).toBe(4);
    for (const [id, text] of await w.freeze("2026-11")) frozen.set(id, text);
    w.clock.set("2026-12-01T02:00:00Z");
    await w.ingest([
      w.event("chain", "calls", 7, "2026-11-25T00:00:00Z"),
      w.event("chain", "calls", 40, "2026-10-30T00:00:00Z"),
    ]);
    expect((await w.runJob()).adjustments).toBe(2);

    expect(frozen.size).toBe(4 + 4);
    for (const [id, text] of frozen) expect(await w.textOf(id), id).toBe(text);
    await expect(w.t.tally.ctx.db.query("UPDATE invoices SET total = 0 WHERE status = 'final'")).rejects.toThrow(
      /final/,
    );
  });
});
