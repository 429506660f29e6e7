// The Stripe-like test server itself, driven by the real stripe SDK: what the sync tests rely on it for must be
// what Stripe documents — form bodies, bearer keys, identifier dedupe with Stripe's text and header, whole numbers,
// the timestamp window, one call at a time per customer and meter, a per-second limit, and the v2 stream.
import Stripe from "stripe";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { addressOf } from "../src/stripe/client.js";
import { until } from "./helpers/eventually.js";
import { type FakeStripe, startFakeStripe } from "./helpers/fakeStripe.js";

const NOW = new Date("2026-11-10T12:00:00Z");
const seconds = (d: Date) => Math.floor(d.getTime() / 1000);

describe("the fake Stripe", () => {
  let fake: FakeStripe;
  let stripe: Stripe;
  const event = (over: Partial<Stripe.Billing.MeterEventCreateParams> = {}) => ({
    event_name: "api_calls",
    payload: { stripe_customer_id: "cus_1", value: "5" },
    identifier: `id-${Math.random()}`,
    timestamp: seconds(NOW) - 60,
    ...over,
  });
  const refusal = async (call: Promise<unknown>) => {
    try {
      await call;
    } catch (err) {
      return err as { statusCode: number; message: string; rawType: string; headers: Record<string, string> };
    }
    throw new Error("expected Stripe to refuse");
  };

  beforeAll(async () => {
    fake = await startFakeStripe({ now: () => NOW, rateLimit: 1000 });
    stripe = new Stripe(fake.apiKey, { maxNetworkRetries: 0, ...addressOf(fake.url) });
  });
  afterAll(() => fake.close());

  it("when an event is sent twice with one identifier, then the second gets Stripe's 400 with stripe-should-retry: false", async () => {
    const e = event({ identifier: "dup-1" });
    const created = await stripe.billing.meterEvents.create(e);
    expect(created).toMatchObject({ object: "billing.meter_event", identifier: "dup-1", payload: { value: "5" } });
    const err = await refusal(stripe.billing.meterEvents.create(e));
    expect(err).toMatchObject({ statusCode: 400, rawType: "invalid_request_error" });
    expect(err.message).toBe("An event already exists with identifier dup-1.");
    expect(err.headers["stripe-should-retry"]).toBe("false");
    expect(fake.sum("cus_1", "api_calls")).toBe(5n);
  });

  it("when a value is not a whole number or has more than 15 digits, or the timestamp is outside the window, then 400", async () => {
    for (const over of [
      { payload: { stripe_customer_id: "cus_1", value: "1.5" } },
      { payload: { stripe_customer_id: "cus_1", value: "1234567890123456" } },
      { timestamp: seconds(NOW) - 35 * 86_400 - 1 },
      { timestamp: seconds(NOW) + 301 },
    ]) {
      expect((await refusal(stripe.billing.meterEvents.create(event(over)))).statusCode, JSON.stringify(over)).toBe(
        400,
      );
    }
    await stripe.billing.meterEvents.create(event({ payload: { stripe_customer_id: "cus_2", value: "-3" } }));
    expect(fake.sum("cus_2", "api_calls")).toBe(-3n);
  });

  it("when the key is wrong, then 401 in Stripe's error shape", async () => {
    const other = new Stripe("sk_test_wrong_key_000", { maxNetworkRetries: 0, ...addressOf(fake.url) });
    const err = await refusal(other.billing.meterEvents.create(event()));
    expect(err.statusCode).toBe(401);
    expect(err.message).toMatch(/^Invalid API Key provided/);
  });

  it("when two calls for one customer and meter overlap, then the second gets 429; other customers go through", async () => {
    fake.inject({ kind: "hang", ms: 300 });
    const first = stripe.billing.meterEvents.create(event({ payload: { stripe_customer_id: "cus_3", value: "1" } }));
    await until(
      () => fake.inFlight,
      (n) => n === 1,
    );
    const second = await refusal(
      stripe.billing.meterEvents.create(event({ payload: { stripe_customer_id: "cus_3", value: "1" } })),
    );
    expect(second.statusCode).toBe(429);
    await stripe.billing.meterEvents.create(event({ payload: { stripe_customer_id: "cus_4", value: "1" } }));
    await first;
    expect(fake.sum("cus_3", "api_calls")).toBe(1n);
  });

  it("when more requests than the limit arrive within a second, then the extra ones get 429", async () => {
    fake.rateLimit = 3;
    try {
      // Earlier requests are out of the one-second window.
      await until(
        () => fake.arrivalsInLastSecond(),
        (n) => n === 0,
        { timeout: 2_000 },
      );
      const results = await Promise.allSettled(
        Array.from({ length: 5 }, (_, i) =>
          stripe.billing.meterEvents.create(event({ payload: { stripe_customer_id: `cus_rl_${i}`, value: "1" } })),
        ),
      );
      expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(3);
      expect(fake.maxPerSecond()).toBeGreaterThanOrEqual(5);
    } finally {
      fake.rateLimit = 1000;
    }
  });

  it("when the v2 stream gets a batch with a session token, then valid events count, duplicates and bad ones are dropped", async () => {
    const session = await stripe.v2.billing.meterEventSession.create();
    expect(session.authentication_token).toMatch(/^mes_tok_/);
    await stripe.v2.billing.meterEventStream.create(
      {
        events: [
          {
            event_name: "api_calls",
            identifier: "v2-1",
            payload: { stripe_customer_id: "cus_v2", value: "4" },
            timestamp: NOW.toISOString(),
          },
          {
            event_name: "api_calls",
            identifier: "v2-1",
            payload: { stripe_customer_id: "cus_v2", value: "4" },
            timestamp: NOW.toISOString(),
          },
          {
            event_name: "api_calls",
            identifier: "v2-2",
            payload: { stripe_customer_id: "cus_v2", value: "0.5" },
            timestamp: NOW.toISOString(),
          },
        ],
      },
      { apiKey: session.authentication_token },
    );
    expect(fake.sum("cus_v2", "api_calls")).toBe(4n);
    expect(fake.v2Invalid).toEqual([expect.objectContaining({ identifier: "v2-2" })]);
    const err = await refusal(stripe.v2.billing.meterEventStream.create({ events: [] }, { apiKey: "mes_tok_unknown" }));
    expect(err.statusCode).toBe(401);
  });

  it("when an invoice item is created twice with one Idempotency-Key, then the first answer is replayed; with other parameters, 400", async () => {
    const params = { customer: "cus_1", amount: -250, currency: "usd", description: "Correction" };
    const first = await stripe.invoiceItems.create(params, { idempotencyKey: "adj-1" });
    const again = await stripe.invoiceItems.create(params, { idempotencyKey: "adj-1" });
    expect(again.id).toBe(first.id);
    expect(again.lastResponse.headers["idempotent-replayed"]).toBe("true");
    expect(fake.invoiceItems.filter((i) => i.idempotencyKey === "adj-1")).toHaveLength(1);
    const other = await refusal(stripe.invoiceItems.create({ ...params, amount: 250 }, { idempotencyKey: "adj-1" }));
    expect(other.statusCode).toBe(400);
    expect(other.rawType).toBe("idempotency_error");
    const second = await stripe.invoiceItems.create({ ...params, amount: 250 }, { idempotencyKey: "adj-2" });
    expect(second.id).not.toBe(first.id);
  });
});
