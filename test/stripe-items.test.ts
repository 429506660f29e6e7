// The one Stripe invoice-item sender and send loop (adjustments and credits both use it), through the real SDK
// against the Stripe-like server, with the rows in memory: what each answer of Stripe does to the row and to the
// run — created (or replayed for a resent key), refused, the key reused with other parameters, 429, 500, a refused
// API key — and that the shutdown signal stops the loop and unmapped rows are reported.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createLogger } from "../src/logger.js";
import { createStripeClient } from "../src/stripe/client.js";
import {
  classifyItemError,
  createInvoiceItemSender,
  type InvoiceItemRequest,
  type InvoiceItemSender,
  type ItemQueue,
  type ItemSendOutcome,
  sendItems,
} from "../src/stripe/itemSender.js";
import { RateLimiter } from "../src/stripe/rateLimit.js";
import { type FakeStripe, startFakeStripe } from "./helpers/fakeStripe.js";

const silent = createLogger("silent");
const PERIOD = { start: new Date("2026-10-01T00:00:00Z"), end: new Date("2026-11-01T00:00:00Z") };

interface Row {
  id: string;
  customer: string;
  amount: number;
  key?: string;
  outcomes: ItemSendOutcome[];
}

/** A queue over rows in memory: each row keeps every answer recorded on it. */
function memoryQueue(rows: Row[], unmapped = 0): ItemQueue<Row> & { loaded: Row[] } {
  return {
    loaded: rows,
    noun: "a test item",
    load: async () => ({ rows, unmapped }),
    requestOf: (r): InvoiceItemRequest => ({
      idempotencyKey: r.key ?? `test:${r.id}`,
      stripeCustomerId: r.customer,
      amount: r.amount,
      currency: "USD",
      description: `Item ${r.id}`,
      period: PERIOD,
      metadata: { test_row: r.id },
    }),
    identify: (r) => ({ row: r.id }),
    record: async (r, outcome) => {
      r.outcomes.push(outcome);
    },
  };
}

const row = (id: string, over: Partial<Row> = {}): Row => ({
  id,
  customer: "cus_1",
  amount: -100,
  outcomes: [],
  ...over,
});

describe("the Stripe invoice-item sender", () => {
  let fake: FakeStripe;
  let sender: InvoiceItemSender;
  const send = (queue: ItemQueue<Row>, signal?: AbortSignal) => sendItems(queue, sender, silent, signal);
  const requests = () => fake.requests.filter((r) => r.path === "/v1/invoiceitems");

  beforeAll(async () => {
    fake = await startFakeStripe({ rateLimit: 1000 });
    const stripe = createStripeClient({
      STRIPE_SECRET_KEY: fake.apiKey,
      STRIPE_API_BASE: fake.url,
      TALLY_STRIPE_TIMEOUT_MS: 2_000,
    });
    if (!stripe) throw new Error("a key makes a client");
    sender = createInvoiceItemSender(stripe, new RateLimiter(1000));
  });
  afterAll(() => fake.close());
  beforeEach(() => {
    fake.clearFaults();
    fake.apiKey = "sk_test_fake_0123456789";
  });

  it("when there is no secret key, then there is no client", () => {
    expect(createStripeClient({ STRIPE_SECRET_KEY: undefined, TALLY_STRIPE_TIMEOUT_MS: 1 })).toBeUndefined();
  });

  it("when rows are sent, then each becomes one item with its key, minor units, lower-case currency and period", async () => {
    const rows = [row("a1", { customer: "cus_a" }), row("a2", { customer: "cus_a", amount: 250 })];
    const summary = await send(memoryQueue(rows, 2));
    expect(summary).toEqual({ sent: 2, failed: 0, retry_later: 0, unmapped: 2, stopped: null, failures: [] });
    const items = fake.invoiceItems.filter((i) => i.customer === "cus_a");
    expect(items.map((i) => [i.amount, i.currency, i.idempotencyKey, i.metadata.test_row])).toEqual([
      [-100, "usd", "test:a1", "a1"],
      [250, "usd", "test:a2", "a2"],
    ]);
    expect(items[0]?.period).toEqual({ start: PERIOD.start.getTime() / 1000, end: PERIOD.end.getTime() / 1000 });
    expect(rows.map((r) => r.outcomes)).toEqual([
      [{ kind: "created", id: items[0]?.id }],
      [{ kind: "created", id: items[1]?.id }],
    ]);
  });

  it("when the answer is lost after Stripe created the item, then the run stops and the resend with the key is replayed", async () => {
    // The SDK retries a closed connection once with the same key: both answers are lost.
    fake.injectInvoiceItems("drop", 2, "cus_b");
    const rows = [row("b1", { customer: "cus_b" }), row("b2", { customer: "cus_b" })];
    const first = await send(memoryQueue(rows));
    expect(first).toMatchObject({ sent: 0, retry_later: 1, failed: 0 });
    expect(first.stopped).toMatch(/^retry_later: .*same idempotency key$/);
    expect(rows[1]?.outcomes).toEqual([]);
    const second = await send(memoryQueue(rows));
    expect(second).toMatchObject({ sent: 2, retry_later: 0, stopped: null });
    const items = fake.invoiceItems.filter((i) => i.customer === "cus_b");
    expect(items.map((i) => i.metadata.test_row)).toEqual(["b1", "b2"]);
    expect(rows[0]?.outcomes.at(-1)).toEqual({ kind: "created", id: items[0]?.id });
  });

  it("when a key comes back with other parameters, then the row is refused as idempotency_error and the run goes on", async () => {
    await send(memoryQueue([row("c1", { customer: "cus_c", key: "test:c-shared" })]));
    const rows = [
      row("c2", { customer: "cus_c", key: "test:c-shared", amount: -999 }),
      row("c3", { customer: "cus_c" }),
    ];
    const summary = await send(memoryQueue(rows));
    expect(summary).toMatchObject({ sent: 1, failed: 1, retry_later: 0, stopped: null });
    expect(summary.failures).toEqual([
      { row: "c2", status: 400, code: "idempotency_error", message: expect.stringMatching(/check Stripe/) },
    ]);
    expect(fake.invoiceItems.filter((i) => i.customer === "cus_c").map((i) => i.amount)).toEqual([-100, -100]);
  });

  it("when Stripe refuses an item, then its answer is on the row and in the summary, and the next row is sent", async () => {
    const rows = [row("d1", { customer: "cus_d", amount: 1.5 }), row("d2", { customer: "cus_d" })];
    const summary = await send(memoryQueue(rows));
    expect(summary).toMatchObject({ sent: 1, failed: 1, stopped: null });
    expect(rows[0]?.outcomes).toEqual([
      { kind: "rejected", status: 400, code: "invalid_request_error", message: expect.stringMatching(/amount/) },
    ]);
  });

  it("when Stripe answers 429, 500 or refuses the key, then the run stops there and the rows after it wait", async () => {
    for (const [fault, kind] of [
      ["429", "rate_limited"],
      ["500", "retry_later"],
    ] as const) {
      fake.injectInvoiceItems(fault, 1, `cus_${fault}`);
      const rows = [row("e1", { customer: `cus_${fault}` }), row("e2", { customer: `cus_${fault}` })];
      const summary = await send(memoryQueue(rows));
      expect(summary, fault).toMatchObject({ sent: 0, retry_later: 1 });
      expect(summary.stopped, fault).toMatch(new RegExp(`^${kind}: `));
      expect(rows[0]?.outcomes.map((o) => o.kind)).toEqual([kind]);
      expect(rows[1]?.outcomes).toEqual([]);
    }
    fake.apiKey = "sk_test_another_key_0000";
    const rows = [row("f1", { customer: "cus_f" }), row("f2", { customer: "cus_f" })];
    const summary = await send(memoryQueue(rows));
    expect(summary.stopped).toMatch(/^auth_failed: /);
    expect(rows.map((r) => r.outcomes.length)).toEqual([1, 0]);
  });

  it("when the shutdown signal fires, then no further request is made", async () => {
    const controller = new AbortController();
    const rows = [row("g1", { customer: "cus_g" }), row("g2", { customer: "cus_g" }), row("g3", { customer: "cus_g" })];
    const queue = memoryQueue(rows);
    const record = queue.record;
    queue.record = async (r, outcome) => {
      await record(r, outcome);
      controller.abort();
    };
    const before = requests().length;
    const summary = await send(queue, controller.signal);
    expect(summary).toMatchObject({ sent: 1, stopped: "shutting down" });
    expect(requests().length - before).toBe(1);
  });

  it("when the SDK throws, then each answer maps to what the loop does about it", () => {
    const idem = { statusCode: 400, rawType: "idempotency_error", type: "StripeIdempotencyError", message: "Keys…" };
    expect(classifyItemError(idem)).toMatchObject({ kind: "rejected", status: 400, code: "idempotency_error" });
    // A request with the same key still executing: nothing saved, safe to resend.
    expect(classifyItemError({ statusCode: 409, rawType: "idempotency_error", message: "in progress" }).kind).toBe(
      "retry_later",
    );
    // Meter events' "already exists" means nothing here: a plain refusal.
    expect(classifyItemError({ statusCode: 400, message: "An event already exists with identifier x." }).kind).toBe(
      "rejected",
    );
    expect(classifyItemError({ statusCode: 503, message: "down" }).kind).toBe("retry_later");
    expect(classifyItemError({ type: "StripeConnectionError", message: "timeout" }).kind).toBe("retry_later");
    expect(classifyItemError({ statusCode: 403, message: "restricted key" }).kind).toBe("auth_failed");
  });
});
