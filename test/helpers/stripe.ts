// Stripe test helpers: a Tally wired to a fake Stripe on the same ManualClock, and calls the Stripe tests make.
import request from "supertest";
import { expect } from "vitest";
import type { ManualClock } from "../../src/clock.js";
import type { TestBackend } from "./databases.js";
import { postJson } from "./events.js";
import { type FakeStripe, type FakeStripeOptions, startFakeStripe } from "./fakeStripe.js";
import { admin, startTestTally, type TestTally } from "./tally.js";

export interface StripeRig {
  t: TestTally;
  fake: FakeStripe;
  clock: ManualClock;
  close(): Promise<void>;
}

export async function startStripeRig(
  backend: TestBackend,
  clock: ManualClock,
  opts: { env?: Record<string, string>; fake?: FakeStripeOptions } = {},
): Promise<StripeRig> {
  const fake = await startFakeStripe({ now: () => clock.now(), ...opts.fake });
  const t = await startTestTally(backend, {
    clock,
    env: {
      STRIPE_SECRET_KEY: fake.apiKey,
      STRIPE_API_BASE: fake.url,
      TALLY_STRIPE_BACKOFF_MS: "5",
      TALLY_STRIPE_TIMEOUT_MS: "500",
      ...opts.env,
    },
  });
  return {
    t,
    fake,
    clock,
    async close() {
      await t.close();
      await fake.close();
    },
  };
}

export async function putMeter(
  t: TestTally,
  key: string,
  body: { aggregation: "sum" | "count" | "max" | "last"; stripe_event_name?: string | null; stripe_scale?: string },
) {
  const res = await request(t.tally.app)
    .put(`/v1/meters/${key}`)
    .set(admin)
    .send({ name: key, unit: "unit", ...body });
  expect(res.status, JSON.stringify(res.body)).toBeLessThan(300);
}

export async function putCustomer(t: TestTally, id: string, stripeCustomerId: string | null) {
  const res = await request(t.tally.app)
    .put(`/v1/customers/${encodeURIComponent(id)}`)
    .set(admin)
    .send({ stripe_customer_id: stripeCustomerId });
  expect(res.status, JSON.stringify(res.body)).toBeLessThan(300);
}

export async function ingest(t: TestTally, events: object[]) {
  const res = await postJson(t.tally, events);
  expect(res.status, JSON.stringify(res.body)).toBe(202);
  return res.body as { accepted: number; duplicates: number };
}

// biome-ignore lint/suspicious/noExplicitAny: the summary is checked field by field
export async function sync(t: TestTally): Promise<any> {
  const res = await request(t.tally.app).post("/v1/jobs/sync-stripe/run").set(admin);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body.summary;
}

export interface ReconRow {
  customer: string;
  meter: string;
  quantity: string;
  sent: string;
  difference: string;
  status: string;
  sent_units: string;
  expected_units: string;
  pending_buckets: number;
  error_buckets: number;
  stale_buckets: number;
  errors: { bucket: string; code: string; message: string }[];
  note?: string;
}

export async function reconciliation(t: TestTally, period: string): Promise<ReconRow[]> {
  const res = await request(t.tally.app).get("/v1/stripe/reconciliation").query({ period }).set(admin);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body.data;
}

/** An instant `hoursAgo` whole hours before the clock's current hour, plus `minutes`. */
export const hourAt = (clock: ManualClock, hoursAgo: number, minutes = 10) => {
  const hour = Math.floor(clock.now().getTime() / 3_600_000) * 3_600_000;
  return new Date(hour - hoursAgo * 3_600_000 + minutes * 60_000).toISOString();
};
