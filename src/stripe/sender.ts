// Meter events through the real stripe SDK: v1 `billing.meterEvents.create` (one event, synchronous validation),
// or the v2 high-throughput stream (a 15-minute session token, up to 100 events per request, validated later).
// Tally owns retries (maxNetworkRetries 0); every request passes the rate limiter; errors become SendOutcomes.
import Stripe from "stripe";
import type { Clock } from "../clock.js";
import type { RateLimiter } from "./rateLimit.js";
import type { MeterEventSend, MeterEventSender, SendOutcome } from "./types.js";

export interface SenderOptions {
  secretKey: string;
  /** e.g. http://127.0.0.1:12111: host, port and protocol for every Stripe address (v2 meter-events too). */
  apiBase?: string | undefined;
  api: "v1" | "v2";
  timeoutMs: number;
  limiter: RateLimiter;
  clock: Clock;
}

/** The SDK's host/port/protocol options from a base URL. */
export function addressOf(apiBase: string): { host: string; port: number; protocol: "http" | "https" } {
  const url = new URL(apiBase);
  const protocol = url.protocol === "http:" ? "http" : "https";
  return { host: url.hostname, port: url.port ? Number(url.port) : protocol === "http" ? 80 : 443, protocol };
}

const ALREADY_EXISTS = /^An event already exists with identifier/i;

interface SdkError {
  statusCode?: number;
  type?: string;
  rawType?: string;
  code?: string;
  message?: string;
  headers?: Record<string, string>;
}

/** Maps an SDK error to what the sync does about it. */
export function classifyError(err: unknown): SendOutcome {
  const e = (err ?? {}) as SdkError;
  const message = e.message || String(err);
  const status = e.statusCode;
  if (status === undefined) return { kind: "retry_later", message };
  if (status === 400 && ALREADY_EXISTS.test(message)) return { kind: "duplicate" };
  if (status === 429) return { kind: "rate_limited", message };
  if (status === 401 || status === 403) return { kind: "auth_failed", message };
  // Stripe says when retrying makes sense (lock timeouts, 409 idempotency conflicts in progress, ...).
  if (status >= 500 || status === 409 || e.headers?.["stripe-should-retry"] === "true") {
    return { kind: "retry_later", message: `${status}: ${message}` };
  }
  return { kind: "rejected", status, code: e.code ?? e.rawType ?? "stripe_error", message };
}

const isSessionExpired = (err: unknown) => {
  const e = (err ?? {}) as SdkError;
  return e.rawType === "temporary_session_expired" || e.code === "billing_meter_event_session_expired";
};

export function createMeterEventSender(opts: SenderOptions): MeterEventSender {
  const stripe = new Stripe(opts.secretKey, {
    maxNetworkRetries: 0,
    timeout: opts.timeoutMs,
    telemetry: false,
    appInfo: { name: "tally" },
    ...(opts.apiBase ? addressOf(opts.apiBase) : {}),
  });
  let requests = 0;
  const request = async <T>(call: () => Promise<T>): Promise<T> => {
    const done = await opts.limiter.acquire();
    requests += 1;
    try {
      return await call();
    } finally {
      done();
    }
  };

  if (opts.api === "v1") {
    return {
      api: "v1",
      maxBatch: 1,
      get requests() {
        return requests;
      },
      async send(events) {
        const [e] = events;
        if (!e || events.length > 1) throw new Error("the v1 meter events API takes exactly one event per request");
        try {
          await request(() =>
            stripe.billing.meterEvents.create({
              event_name: e.eventName,
              payload: { stripe_customer_id: e.stripeCustomerId, value: e.value },
              identifier: e.identifier,
              timestamp: Math.floor(e.timestamp.getTime() / 1000),
            }),
          );
          return { kind: "delivered" };
        } catch (err) {
          return classifyError(err);
        }
      },
    };
  }

  let session: { token: string; expiresAt: number } | undefined;
  let creating: Promise<{ token: string; expiresAt: number }> | undefined;
  const token = async (): Promise<string> => {
    // Renewed a minute early: a token that expires in flight costs a refused request.
    if (session && session.expiresAt - 60_000 > opts.clock.now().getTime()) return session.token;
    // Concurrent batches wait for one session request.
    creating ??= request(() => stripe.v2.billing.meterEventSession.create())
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
    await request(() =>
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
      return requests;
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
        return classifyError(err);
      }
    },
  };
}
