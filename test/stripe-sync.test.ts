// The Stripe sync on both engines, through the real stripe SDK against a Stripe-like server on the same clock:
// hourly deltas, late events and corrections, scale and carry, max/last meters, every injected fault, refused
// events, late mappings, stale usage, concurrent runs, the reconciliation report, and sync switched off.
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../src/clock.js";
import { BACKENDS } from "./helpers/databases.js";
import { eventually } from "./helpers/eventually.js";
import {
  hourAt,
  ingest,
  putCustomer,
  putMeter,
  reconciliation,
  type StripeRig,
  startStripeRig,
  sync,
} from "./helpers/stripe.js";
import { admin, startTestTally } from "./helpers/tally.js";

const NOW = "2026-11-10T12:30:00Z";
const NOVEMBER = { from: new Date("2026-11-01T00:00:00Z"), to: new Date("2026-12-01T00:00:00Z") };

describe.each(BACKENDS)("Stripe sync on %s", (backend) => {
  let rig: StripeRig;
  let clock: ManualClock;
  const t = () => rig.t;
  const requestsFor = (identifier: string) => rig.fake.requests.filter((r) => r.identifiers.includes(identifier));

  beforeAll(async () => {
    clock = new ManualClock(NOW);
    rig = await startStripeRig(backend, clock);
    await putMeter(rig.t, "calls", { aggregation: "sum", stripe_event_name: "api_calls" });
  });
  afterAll(() => rig.close());
  // Each test has customers of its own, and reads times from the clock (which only moves forward): it passes alone
  // and after any other.
  /** The identifier's hour part (yyyymmddThh) of the hour `hoursAgo` before the clock's. */
  const idHour = (hoursAgo: number) => hourAt(clock, hoursAgo, 0).slice(0, 13).replace(/[-:]/g, "");

  it("when hours of a sum meter are complete, then each is sent once as a whole number, and the current hour waits", async () => {
    await putCustomer(t(), "acme", "cus_acme");
    await ingest(t(), [
      { id: "a1", customer: "acme", meter: "calls", value: 2, timestamp: hourAt(clock, 3, 10) },
      { id: "a2", customer: "acme", meter: "calls", value: 3, timestamp: hourAt(clock, 3, 50) },
      { id: "a3", customer: "acme", meter: "calls", value: 4, timestamp: hourAt(clock, 2, 20) },
      { id: "a4", customer: "acme", meter: "calls", value: 1, timestamp: hourAt(clock, 1, 59) },
      { id: "a5", customer: "acme", meter: "calls", value: 5, timestamp: hourAt(clock, 0, 10) },
    ]);
    const first = await sync(t());
    expect(first).toMatchObject({ enabled: true, api: "v1", sent: 3, failed: 0, pending: 0, stale: 0, errors: 0 });
    const events = rig.fake.eventsOf("cus_acme", "api_calls");
    expect(events.map((e) => e.value)).toEqual([5n, 4n, 1n]);
    // The last second of each hour.
    expect(events.map((e) => new Date(e.timestamp * 1000).toISOString())).toEqual(
      [3, 2, 1].map((ago) => hourAt(clock, ago, 59).replace(":00.000Z", ":59.000Z")),
    );
    expect(events.map((e) => e.identifier)).toEqual(
      [3, 2, 1].map((ago) => expect.stringMatching(new RegExp(`^tly_${idHour(ago)}_1_[0-9a-f]{40}$`))),
    );

    expect(await sync(t())).toMatchObject({ sent: 0, requests: 0, pending: 0 });
    clock.advance(3_600_000);
    expect(await sync(t())).toMatchObject({ sent: 1 });
    expect(rig.fake.sum("cus_acme", "api_calls")).toBe(15n);
  });

  it("when a late event and a negative correction change hours already sent, then a delta and a negative value follow", async () => {
    await putCustomer(t(), "fix", "cus_fix");
    await ingest(t(), [
      { id: "x1", customer: "fix", meter: "calls", value: 5, timestamp: hourAt(clock, 3, 10) },
      { id: "x2", customer: "fix", meter: "calls", value: 4, timestamp: hourAt(clock, 2, 20) },
    ]);
    expect(await sync(t())).toMatchObject({ sent: 2, pending: 0 });
    await ingest(t(), [
      { id: "x3", customer: "fix", meter: "calls", value: "-2", timestamp: hourAt(clock, 3, 30) },
      { id: "x4", customer: "fix", meter: "calls", value: 6, timestamp: hourAt(clock, 2, 30) },
    ]);
    expect(await sync(t())).toMatchObject({ sent: 2, pending: 0 });
    const events = rig.fake.eventsOf("cus_fix", "api_calls");
    expect(events.map((e) => e.value)).toEqual([5n, 4n, -2n, 6n]);
    // The second send of each of those hours: same timestamp as the first, the next identifier.
    expect(events.slice(-2).map((e) => e.identifier)).toEqual([
      expect.stringMatching(new RegExp(`^tly_${idHour(3)}_2_`)),
      expect.stringMatching(new RegExp(`^tly_${idHour(2)}_2_`)),
    ]);
    expect(events.slice(-2).map((e) => e.timestamp)).toEqual(events.slice(0, 2).map((e) => e.timestamp));
    expect(rig.fake.sum("cus_fix", "api_calls")).toBe(13n);
  });

  it("when a fractional meter has stripe_scale 1000, then whole units are sent and the total stays within one unit", async () => {
    await putMeter(t(), "storage", { aggregation: "sum", stripe_event_name: "storage_gb", stripe_scale: "1000" });
    await putCustomer(t(), "byte", "cus_byte");
    const values = ["0.0005", "0.0005", "0.0005", "0.0005", "0.0005", "0.0005", "0.0005", "0.0004", "0.0012"];
    await ingest(
      t(),
      values.map((value, i) => ({
        id: `b${i}`,
        customer: "byte",
        meter: "storage",
        value,
        timestamp: hourAt(clock, 10 - i),
      })),
    );
    const s = await sync(t());
    // 0.5, 0.5, … units an hour: 1, nothing, 1, nothing, …; the carry keeps the month's total exact to a unit.
    expect(rig.fake.eventsOf("cus_byte", "storage_gb").map((e) => e.value)).toEqual([1n, 1n, 1n, 1n, 1n]);
    expect(s.nothing_to_send).toBeGreaterThanOrEqual(4);
    await ingest(t(), [{ id: "b9", customer: "byte", meter: "storage", value: "0.0005", timestamp: hourAt(clock, 1) }]);
    await sync(t());
    const sent = rig.fake.sum("cus_byte", "storage_gb");
    expect(sent).toBe(6n);
    const row = (await reconciliation(t(), "2026-11")).find((r) => r.customer === "byte");
    expect(row).toMatchObject({
      quantity: "0.0056",
      sent: "0.006",
      difference: "-0.0004",
      expected_units: "5.6",
      sent_units: "6",
      status: "in_sync",
    });
  });

  it("when max and last meters change, then the period's running value is sent to a last-formula meter", async () => {
    await putMeter(t(), "seats", { aggregation: "max", stripe_event_name: "seats_max" });
    await putMeter(t(), "tier", { aggregation: "last", stripe_event_name: "tier_last" });
    await putCustomer(t(), "pp", "cus_pp");
    await ingest(t(), [
      { id: "p1", customer: "pp", meter: "seats", value: 3, timestamp: hourAt(clock, 5) },
      { id: "p2", customer: "pp", meter: "seats", value: 8, timestamp: hourAt(clock, 4) },
      { id: "p3", customer: "pp", meter: "seats", value: 5, timestamp: hourAt(clock, 3) },
      { id: "p4", customer: "pp", meter: "tier", value: 2, timestamp: hourAt(clock, 5) },
      { id: "p5", customer: "pp", meter: "tier", value: 1, timestamp: hourAt(clock, 3) },
      { id: "p6", customer: "pp", meter: "seats", value: 10, timestamp: hourAt(clock, 0) },
    ]);
    await sync(t());
    expect(rig.fake.last("cus_pp", "seats_max", NOVEMBER)).toBe(8n);
    expect(rig.fake.last("cus_pp", "tier_last", NOVEMBER)).toBe(1n);

    clock.advance(3_600_000);
    await ingest(t(), [{ id: "p7", customer: "pp", meter: "tier", value: 7, timestamp: hourAt(clock, 1, 30) }]);
    await sync(t());
    expect(rig.fake.last("cus_pp", "seats_max", NOVEMBER)).toBe(10n);
    expect(rig.fake.last("cus_pp", "tier_last", NOVEMBER)).toBe(7n);

    // Late events that change neither the maximum nor the latest value: nothing is sent.
    const before = rig.fake.events.length;
    await ingest(t(), [
      { id: "p8", customer: "pp", meter: "tier", value: 9, timestamp: hourAt(clock, 6) },
      { id: "p9", customer: "pp", meter: "seats", value: 4, timestamp: hourAt(clock, 6) },
    ]);
    await sync(t());
    expect(rig.fake.events.length).toBe(before);
    const seats = rig.fake.eventsOf("cus_pp", "seats_max");
    expect(seats.map((e) => e.value)).toEqual([8n, 10n]);
    expect(seats[1]!.timestamp).toBeGreaterThan(seats[0]!.timestamp);
    const recon = await reconciliation(t(), "2026-11");
    expect(recon.filter((r) => r.customer === "pp").map((r) => [r.meter, r.quantity, r.sent, r.status])).toEqual([
      ["seats", "10", "10", "in_sync"],
      ["tier", "7", "7", "in_sync"],
    ]);
  });

  it("when Stripe answers bursts of 429s, then Tally backs off, stops after a few tries, and the next run delivers everything once", async () => {
    await putCustomer(t(), "flaky", "cus_flaky");
    await ingest(
      t(),
      [1, 2, 3, 4].map((v) => ({
        id: `f${v}`,
        customer: "flaky",
        meter: "calls",
        value: v,
        timestamp: hourAt(clock, v),
      })),
    );
    rig.fake.inject({ kind: "429" }, 3);
    expect(await sync(t())).toMatchObject({ sent: 4, requests: 7, rate_limited: false, pending: 0 });

    await ingest(t(), [
      { id: "f5", customer: "flaky", meter: "calls", value: 5, timestamp: hourAt(clock, 5) },
      { id: "f6", customer: "flaky", meter: "calls", value: 6, timestamp: hourAt(clock, 6) },
    ]);
    rig.fake.inject({ kind: "429" }, 4);
    const stopped = await sync(t());
    expect(stopped).toMatchObject({ sent: 0, rate_limited: true, pending: 2, requests: 4 });
    expect(stopped.stopped).toMatch(/rate limited/);
    const refusedId = rig.fake.requests.at(-1)!.identifiers[0]!;
    expect(requestsFor(refusedId).map((r) => r.status)).toEqual([429, 429, 429, 429]);
    expect(await sync(t())).toMatchObject({ sent: 2, pending: 0 });
    expect(requestsFor(refusedId).map((r) => r.status)).toEqual([429, 429, 429, 429, 200]);
    expect(rig.fake.sum("cus_flaky", "api_calls")).toBe(21n);
  });

  it("when Stripe answers 500, then the send stays pending and goes again with the same identifier and value", async () => {
    await putCustomer(t(), "f500", "cus_f500");
    await ingest(t(), [{ id: "f7", customer: "f500", meter: "calls", value: 7, timestamp: hourAt(clock, 7) }]);
    rig.fake.inject({ kind: "500" });
    expect(await sync(t())).toMatchObject({ sent: 0, retry_later: 1, pending: 1 });
    const id = rig.fake.requests.at(-1)!.identifiers[0]!;
    const { rows } = await t().tally.ctx.db.query<{ attempts: number; last_attempt_error: string }>(
      "SELECT attempts, last_attempt_error FROM stripe_ledger WHERE pending_identifier = $1",
      [id],
    );
    expect(rows).toEqual([{ attempts: 1, last_attempt_error: expect.stringContaining("500") }]);
    expect(await sync(t())).toMatchObject({ sent: 1, pending: 0 });
    expect(requestsFor(id).map((r) => r.status)).toEqual([500, 200]);
    expect(rig.fake.eventsOf("cus_f500", "api_calls").filter((e) => e.identifier === id)).toHaveLength(1);
    expect(rig.fake.sum("cus_f500", "api_calls")).toBe(7n);
  });

  it("when an hour changes while its send is pending after a 500, then the retry sends the same value and the change follows", async () => {
    await putCustomer(t(), "moving", "cus_moving");
    await ingest(t(), [{ id: "mv1", customer: "moving", meter: "calls", value: 5, timestamp: hourAt(clock, 2) }]);
    rig.fake.inject({ kind: "500" });
    expect(await sync(t())).toMatchObject({ sent: 0, retry_later: 1, pending: 1 });
    const id = rig.fake.requests.at(-1)!.identifiers[0]!;
    // A late event in the same hour: the hour's total is now 8, while Stripe may or may not have the 5.
    await ingest(t(), [{ id: "mv2", customer: "moving", meter: "calls", value: 3, timestamp: hourAt(clock, 2, 40) }]);
    await sync(t());
    const retried = rig.fake.eventsOf("cus_moving", "api_calls").find((e) => e.identifier === id);
    expect(retried?.value).toBe(5n);
    // The retry covered 5 of the 8, not 8: the difference is sent too (in this run or the next).
    await sync(t());
    expect(rig.fake.eventsOf("cus_moving", "api_calls").map((e) => e.value)).toEqual([5n, 3n]);
    expect(rig.fake.sum("cus_moving", "api_calls")).toBe(8n);
    const row = (await reconciliation(t(), "2026-11")).find((r) => r.customer === "moving");
    expect(row).toMatchObject({ quantity: "8", sent: "8", difference: "0", status: "in_sync" });
    expect(await sync(t())).toMatchObject({ sent: 0, pending: 0 });
  });

  it("when Stripe answers after the timeout (and did record the event), then the resend is recognised by its identifier", async () => {
    await putCustomer(t(), "fhang", "cus_fhang");
    await ingest(t(), [{ id: "f8", customer: "fhang", meter: "calls", value: 8, timestamp: hourAt(clock, 8) }]);
    rig.fake.inject({ kind: "hang", ms: 1_200 });
    expect(await sync(t())).toMatchObject({ sent: 0, retry_later: 1, pending: 1 });
    // The hung request is still open at the server: its identifier is the one pending in the ledger.
    const [id] = await pendingIds();
    if (!id) throw new Error("no pending send after a timeout");
    // …and is answered, and recorded, after Tally gave up waiting.
    await eventually(() => expect(requestsFor(id).map((r) => r.status)).toEqual([200]), { timeout: 10_000 });
    expect(await sync(t())).toMatchObject({ sent: 0, already_delivered: 1, pending: 0 });
    expect(requestsFor(id).map((r) => r.status)).toEqual([200, 400]);
    expect(rig.fake.eventsOf("cus_fhang", "api_calls").filter((e) => e.identifier === id)).toHaveLength(1);
    expect(rig.fake.sum("cus_fhang", "api_calls")).toBe(8n);
  });

  it("when Stripe records an event and then answers 500, then the retry counts as delivered and nothing is doubled", async () => {
    await putCustomer(t(), "faccept", "cus_faccept");
    await ingest(t(), [{ id: "f9", customer: "faccept", meter: "calls", value: 9, timestamp: hourAt(clock, 9) }]);
    rig.fake.inject({ kind: "accept-then-500" });
    expect(await sync(t())).toMatchObject({ sent: 0, retry_later: 1, pending: 1 });
    const id = rig.fake.requests.at(-1)!.identifiers[0]!;
    expect(await sync(t())).toMatchObject({ already_delivered: 1, pending: 0 });
    expect(requestsFor(id).map((r) => r.status)).toEqual([500, 400]);
    expect(rig.fake.sum("cus_faccept", "api_calls")).toBe(9n);
    const row = (await reconciliation(t(), "2026-11")).find((r) => r.customer === "faccept");
    expect(row).toMatchObject({ quantity: "9", sent: "9", difference: "0", status: "in_sync" });
  });

  it("when Stripe answers nothing but 500s, then the run ends after a few and the next one sends everything", async () => {
    const customers = Array.from({ length: 10 }, (_, i) => `down${i}`);
    for (const c of customers) await putCustomer(t(), c, `cus_${c}`);
    await ingest(
      t(),
      customers.map((c, i) => ({
        id: `d${i}`,
        customer: c,
        meter: "calls",
        value: i + 1,
        timestamp: hourAt(clock, 2),
      })),
    );
    rig.fake.inject({ kind: "500" }, 50);
    try {
      const s = await sync(t());
      expect(s.stopped).toMatch(/did not answer 5 requests in a row/);
      expect(s.sent).toBe(0);
      expect(s.requests).toBeGreaterThanOrEqual(5);
      expect(s.requests).toBeLessThan(10);
      expect(s.pending).toBe(10);
    } finally {
      rig.fake.clearFaults();
    }
    expect(await sync(t())).toMatchObject({ sent: 10, pending: 0, stopped: null });
    for (const [i, c] of customers.entries()) expect(rig.fake.sum(`cus_${c}`, "api_calls")).toBe(BigInt(i + 1));
  });

  it("when Stripe refuses the API key, then the run stops with the reason and the sends wait, unchanged, for a key that works", async () => {
    await putCustomer(t(), "fkey", "cus_fkey");
    await ingest(t(), [{ id: "f10", customer: "fkey", meter: "calls", value: 10, timestamp: hourAt(clock, 10) }]);
    const key = rig.fake.apiKey;
    rig.fake.apiKey = "sk_test_rotated_key_0000";
    try {
      const s = await sync(t());
      expect(s).toMatchObject({ sent: 0, failed: 0, pending: 1, requests: 1 });
      expect(s.stopped).toMatch(/^Stripe refused the API key: Invalid API Key provided/);
    } finally {
      rig.fake.apiKey = key;
    }
    const [id] = await pendingIds();
    expect(await sync(t())).toMatchObject({ sent: 1, pending: 0 });
    expect(requestsFor(id as string).map((r) => r.status)).toEqual([401, 200]);
    expect(rig.fake.sum("cus_fkey", "api_calls")).toBe(10n);
  });

  it("when Stripe refuses an event, then its message is on the ledger row and in the summary, and it waits for a change or a reset", async () => {
    await putMeter(t(), "gpu", { aggregation: "sum", stripe_event_name: "gpu_minutes" });
    await putCustomer(t(), "render", "cus_render");
    rig.fake.meters = new Set(["api_calls", "storage_gb", "seats_max", "tier_last", "mails"]);
    try {
      await ingest(t(), [{ id: "r1", customer: "render", meter: "gpu", value: 5, timestamp: hourAt(clock, 2) }]);
      const s = await sync(t());
      const message = "No active meter found with event_name gpu_minutes.";
      expect(s).toMatchObject({ failed: 1, errors: 1, pending: 0 });
      expect(s.failures).toEqual([
        expect.objectContaining({
          customer: "render",
          meter: "gpu",
          status: 400,
          code: "invalid_request_error",
          message,
        }),
      ]);
      const { rows } = await t().tally.ctx.db.query(
        "SELECT error_message, pending_identifier FROM stripe_ledger WHERE customer_id = 'render'",
        [],
      );
      expect(rows).toEqual([{ error_message: message, pending_identifier: null }]);
      const recon = (await reconciliation(t(), "2026-11")).find((r) => r.customer === "render");
      expect(recon).toMatchObject({ status: "error", error_buckets: 1, sent: "0", difference: "5" });
      expect(recon?.errors).toEqual([expect.objectContaining({ message })]);

      expect(await sync(t())).toMatchObject({ failed: 0, errors: 1, requests: 0 });
      await ingest(t(), [{ id: "r2", customer: "render", meter: "gpu", value: 1, timestamp: hourAt(clock, 2, 30) }]);
      expect(await sync(t())).toMatchObject({ failed: 1, requests: 1 });

      rig.fake.meters.add("gpu_minutes");
      const reset = await request(t().tally.app)
        .post("/v1/stripe/errors/reset")
        .set(admin)
        .send({ customer: "render" });
      expect(reset.body).toEqual({ reset: 1 });
      expect(await sync(t())).toMatchObject({ sent: 1, errors: 0 });
      expect(rig.fake.sum("cus_render", "gpu_minutes")).toBe(6n);
    } finally {
      rig.fake.meters = undefined;
    }
  });

  it("when a scaled value would exceed Stripe's 15 significant digits, then it is not sent and the row says why", async () => {
    await putMeter(t(), "huge", { aggregation: "sum", stripe_event_name: "huge_units", stripe_scale: "1000" });
    await putCustomer(t(), "whale", "cus_whale");
    await ingest(t(), [
      { id: "h1", customer: "whale", meter: "huge", value: "1000000000000", timestamp: hourAt(clock, 2) },
    ]);
    const s = await sync(t());
    expect(s).toMatchObject({ sent: 0, failed: 1, requests: 0 });
    expect(s.failures).toEqual([expect.objectContaining({ customer: "whale", status: null, code: "value_too_large" })]);
    expect(rig.fake.eventsOf("cus_whale", "huge_units")).toEqual([]);
    const row = (await reconciliation(t(), "2026-11")).find((r) => r.customer === "whale");
    expect(row).toMatchObject({ status: "error", error_buckets: 1 });
    expect(row?.errors[0]?.message).toMatch(/15 significant digits/);
    // Not to be retried: the operator lowers the scale.
    await putMeter(t(), "huge", { aggregation: "sum", stripe_event_name: "huge_units", stripe_scale: "1" });
    await request(t().tally.app).post("/v1/stripe/errors/reset").set(admin).send({ meter: "huge" });
    expect(await sync(t())).toMatchObject({ sent: 1, errors: 0 });
    expect(rig.fake.sum("cus_whale", "huge_units")).toBe(1_000_000_000_000n);
  });

  it("when the reconciliation is read before and after a sync, then it shows the difference, then none; unmapped pairs are listed", async () => {
    await putMeter(t(), "exports", { aggregation: "count" });
    await putCustomer(t(), "recon", "cus_recon");
    await ingest(t(), [
      { id: "q1", customer: "recon", meter: "calls", value: 7, timestamp: hourAt(clock, 2) },
      { id: "q2", customer: "recon", meter: "calls", value: 3, timestamp: hourAt(clock, 1) },
      { id: "q3", customer: "recon", meter: "exports", timestamp: hourAt(clock, 1) },
      { id: "q4", customer: "walk-in", meter: "calls", value: 4, timestamp: hourAt(clock, 1) },
    ]);
    const find = (rows: Awaited<ReturnType<typeof reconciliation>>, customer: string, meter: string) =>
      rows.find((r) => r.customer === customer && r.meter === meter);
    const before = await reconciliation(t(), "2026-11");
    expect(find(before, "recon", "calls")).toMatchObject({
      quantity: "10",
      sent: "0",
      difference: "10",
      status: "pending",
      expected_units: "10",
      sent_units: "0",
    });
    expect(find(before, "recon", "exports")).toMatchObject({
      quantity: "1",
      status: "unmapped",
      note: "the meter has no stripe_event_name",
    });
    expect(find(before, "walk-in", "calls")).toMatchObject({
      quantity: "4",
      status: "unmapped",
      note: "the customer has no stripe_customer_id",
    });

    await sync(t());
    const after = await reconciliation(t(), "2026-11");
    expect(find(after, "recon", "calls")).toMatchObject({
      quantity: "10",
      sent: "10",
      difference: "0",
      status: "in_sync",
    });
    expect(find(after, "recon", "exports")?.status).toBe("unmapped");
    expect(find(after, "walk-in", "calls")?.status).toBe("unmapped");

    for (const period of ["2026-13", "november", "2026-1"]) {
      const res = await request(t().tally.app).get("/v1/stripe/reconciliation").query({ period }).set(admin);
      expect(res.status, period).toBe(400);
      expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
      expect(res.body.code).toBe("validation_failed");
    }
  });

  it("when a customer gets its Stripe id later, or the scale or the destination changes, then the window is (re)sent", async () => {
    await putMeter(t(), "mail", { aggregation: "sum", stripe_event_name: "mails" });
    await ingest(
      t(),
      [1, 2, 3, 4].map((v) => ({
        id: `l${v}`,
        customer: "late",
        meter: "mail",
        value: v,
        timestamp: hourAt(clock, v + 1),
      })),
    );
    expect((await sync(t())).sent).toBe(0);
    await putCustomer(t(), "late", "cus_late");
    const mapped = await sync(t());
    expect(mapped.pairs.new).toBeGreaterThanOrEqual(1);
    expect(mapped.sent).toBe(4);
    expect(rig.fake.sum("cus_late", "mails")).toBe(10n);

    await putMeter(t(), "mail", { aggregation: "sum", stripe_event_name: "mails", stripe_scale: "10" });
    const rescaled = await sync(t());
    expect(rescaled.pairs.rescaled).toBeGreaterThanOrEqual(1);
    expect(rig.fake.sum("cus_late", "mails")).toBe(100n);

    await putCustomer(t(), "late", "cus_late_2");
    const moved = await sync(t());
    expect(moved.pairs.remapped).toBeGreaterThanOrEqual(1);
    expect(rig.fake.sum("cus_late_2", "mails")).toBe(100n);
    expect(rig.fake.sum("cus_late", "mails")).toBe(100n);
    const row = (await reconciliation(t(), "2026-11")).find((r) => r.customer === "late" && r.meter === "mail");
    expect(row).toMatchObject({ quantity: "10", sent: "10", sent_units: "100", status: "in_sync" });
  });

  it("when two syncs start at once, then they run one after the other and nothing is sent twice", async () => {
    await putCustomer(t(), "twice", "cus_twice");
    await ingest(
      t(),
      [1, 2, 3, 4, 5, 6].map((v) => ({
        id: `w${v}`,
        customer: "twice",
        meter: "calls",
        value: v,
        timestamp: hourAt(clock, v),
      })),
    );
    const [a, b] = await Promise.all([sync(t()), sync(t())]);
    expect(a.sent + b.sent).toBe(6);
    const events = rig.fake.eventsOf("cus_twice", "api_calls");
    expect(events).toHaveLength(6);
    for (const e of events) expect(requestsFor(e.identifier)).toHaveLength(1);
    expect(rig.fake.sum("cus_twice", "api_calls")).toBe(21n);
  });

  it("when usage becomes older than Stripe's 35-day window before it was sent, then it is reported, never sent", async () => {
    await putCustomer(t(), "old", "cus_old");
    const ts = new Date(clock.now().getTime() - 35 * 86_400_000 + 30 * 60_000).toISOString();
    await ingest(t(), [{ id: "o1", customer: "old", meter: "calls", value: 3, timestamp: ts }]);
    clock.advance(2 * 3_600_000);
    const s = await sync(t());
    expect(s.stale).toBeGreaterThanOrEqual(1);
    expect(s.stale_buckets).toContainEqual(expect.objectContaining({ customer: "old", meter: "calls" }));
    expect(rig.fake.eventsOf("cus_old", "api_calls")).toEqual([]);
    const row = (await reconciliation(t(), ts.slice(0, 7))).find((r) => r.customer === "old");
    expect(row).toMatchObject({ status: "error", stale_buckets: 1, sent: "0", difference: "3" });
    expect(row?.note).toMatch(/35-day/);
  });

  it("when STRIPE_SECRET_KEY is unset, then the job runs, sends nothing and says Stripe sync is off", async () => {
    const off = await startTestTally(backend, { clock });
    try {
      const res = await request(off.tally.app).post("/v1/jobs/sync-stripe/run").set(admin);
      expect(res.status).toBe(200);
      expect(res.body.summary).toEqual({ enabled: false, message: "Stripe sync is off: STRIPE_SECRET_KEY is not set" });
    } finally {
      await off.close();
    }
  });

  /** Identifiers of pending sends, oldest bucket first. */
  async function pendingIds(): Promise<string[]> {
    const { rows } = await t().tally.ctx.db.query<{ id: string }>(
      "SELECT pending_identifier AS id FROM stripe_ledger WHERE pending_identifier IS NOT NULL ORDER BY bucket",
      [],
    );
    return rows.map((r) => r.id);
  }
});
