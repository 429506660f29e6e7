// Meter events through the real stripe SDK: v1 `billing.meterEvents.create` (one event, synchronous validation),
// or the v2 high-throughput stream (a 15-minute session token, up to 100 events per request, validated later).
// Tally owns retries; every request passes the rate limiter; errors become MeterSendOutcomes.
import type Stripe from "stripe";
import type { Clock } from "../clock.js";
import { classifyFailure, messageOf, type SdkError } from "./client.js";
import type { RateLimiter } from "./rateLimit.js";
import type { MeterEventSend, MeterEventSender, MeterSendOutcome } from "./types.js";

interface SenderOptions {
  /** From createStripeClient. */
  stripe: Stripe;
  api: "v1" | "v2";
  limiter: RateLimiter;
  clock: Clock;
}

const ALREADY_EXISTS = /^An event already exists with identifier/i;

/** Maps an SDK error to what the sync does about a meter-event request. */
export function classifyMeterError(err: unknown): MeterSendOutcome {
  const e = (err ?? {}) as SdkError;
  if (e.statusCode === 400 && ALREADY_EXISTS.test(messageOf(err))) return { kind: "duplicate" };
  return classifyFailure(err);
}

const isSessionExpired = (err: unknown) => {
  const e = (err ?? {}) as SdkError;
  return e.rawType === "temporary_session_expired" || e.code === "billing_meter_event_session_expired";
};

/** Requests through the limiter, counted. */
class Requests {
  count = 0;
  constructor(private readonly limiter: RateLimiter) {}
  async run<T>(call: () => Promise<T>): Promise<T> {
    const done = await this.limiter.acquire();
    this.count += 1;
    try {
      return await call();
    } finally {
      done();
    }
  }
}

export function createMeterEventSender(opts: SenderOptions): MeterEventSender {
  const requests = new Requests(opts.limiter);
  return opts.api === "v1" ? v1Sender(opts.stripe, requests) : v2Sender(opts, requests);
}

function v1Sender(stripe: Stripe, requests: Requests): MeterEventSender {
  return {
    api: "v1",
    maxBatch: 1,
    get requests() {
      return requests.count;
    },
    async send(events) {
      const [e] = events;
      if (!e || events.length > 1) throw new Error("the v1 meter events API takes exactly one event per request");
      try {
        await requests.run(() =>
          stripe.billing.meterEvents.create({
            event_name: e.eventName,
            payload: { stripe_customer_id: e.stripeCustomerId, value: e.value },
            identifier: e.identifier,
            timestamp: Math.floor(e.timestamp.getTime() / 1000),
          }),
        );
        return { kind: "delivered" };
      } catch (err) {
        return classifyMeterError(err);
      }
    },
  };
}

function v2Sender({ stripe, clock }: SenderOptions, requests: Requests): MeterEventSender {
  let session: { token: string; expiresAt: number } | undefined;
  let creating: Promise<{ token: string; expiresAt: number }> | undefined;
  const token = async (): Promise<string> => {
    // Renewed a minute early: a token that expires in flight costs a refused request.
    if (session && session.expiresAt - 60_000 > clock.now().getTime()) return session.token;
    // Concurrent batches wait for one session request.
    creating ??= requests
      .run(() => stripe.v2.billing.meterEventSession.create())
      .then((created) => {
        session = { token: created.authentication_token, expiresAt: Date.parse(created.expires_at) };
        return session;
      })
      .finally(() => {
        creating = undefined;
      });
    return (await creating).token;
  };
  const stream = async (events: MeterEventSend[]) => {
    const apiKey = await token();
    await requests.run(() =>
      stripe.v2.billing.meterEventStream.create(
        {
          events: events.map((e) => ({
            event_name: e.eventName,
            identifier: e.identifier,
            payload: { stripe_customer_id: e.stripeCustomerId, value: e.value },
            timestamp: e.timestamp.toISOString(),
          })),
        },
        { apiKey },
      ),
    );
  };
  return {
    api: "v2",
    maxBatch: 100,
    get requests() {
      return requests.count;
    },
    async send(events) {
      if (events.length === 0 || events.length > 100)
        throw new Error("the v2 stream takes 1 to 100 events per request");
      try {
        try {
          await stream(events);
        } catch (err) {
          if (!isSessionExpired(err)) throw err;
          session = undefined;
          await stream(events);
        }
        return { kind: "delivered" };
      } catch (err) {
        return classifyMeterError(err);
      }
    },
  };
}
