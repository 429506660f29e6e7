// Stripe invoice items (POST /v1/invoiceitems), one sender and one send loop for every kind Tally sends: the
// adjustments of final invoices (invoiceItems.ts) and the credits of closed periods (credits.ts). Each kind keeps
// its rows in its own table and says how a row reads as a request and where Stripe's answer goes (an ItemQueue);
// the requests, the error policy and when a run stops are the same for all of them.
//
// The error policy follows Stripe's documented idempotency (docs.stripe.com/idempotency, /error-low-level, /api/errors):
// every request carries a deterministic Idempotency-Key, and Stripe saves the status and body of the first request
// with a key once its execution began, and answers every later request with that key from the saved answer — for
// 24 hours, after which the key is pruned and a request with it is new. So:
// - 200: created, or replayed (an earlier attempt created it; the row records the id, the guard beyond 24 hours).
// - 400 idempotency_error: the key was used before with other parameters. The first request may have created an
//   item, so resending (a new request once the key is pruned) could create a second: refused, recorded on the row,
//   never resent; an operator checks Stripe. Tally keeps a row's parameters fixed so this should not happen.
// - Any other 4xx but 401/403/429: Stripe's answer about this item (a replayed one for 24 hours too): refused.
// - 409 (a request with the same key still executing: no result saved), 5xx, timeouts, connection errors: not known
//   to have been carried out; resent by a later run with the same key.
// - Every answer but created and rejected ends the run (an outage, the rate limit, a key problem holds for the rows
//   after it too); the next run resumes. Stripe replays a saved 500 until the key is pruned, so one row may fail
//   for a day: queues load rows by attempts, then age, so such a row goes behind the fresh ones instead of holding
//   them back.
// Rows of customers without a stripe_customer_id are counted as unmapped and wait for a mapping; the shutdown
// signal stops the loop between requests.
import type Stripe from "stripe";
import type { Config } from "../config.js";
import { stripeMaxRps } from "../config.js";
import type { Logger } from "../logger.js";
import { classifyFailure, createStripeClient, messageOf, type SdkError, type StripeFailure } from "./client.js";
import { RateLimiter } from "./rateLimit.js";

/** One invoice item as Tally asks for it: the same row always makes the same request (its key's parameters). */
export interface InvoiceItemRequest {
  idempotencyKey: string;
  stripeCustomerId: string;
  /** Minor units (cents), negative for a credit or a correction downwards. */
  amount: number;
  currency: string;
  description: string;
  period: { start: Date; end: Date };
  metadata: Record<string, string>;
}

/** What Stripe answered one invoice-item request (a meter-event request's is MeterSendOutcome). */
export type ItemSendOutcome = { kind: "created"; id: string } | StripeFailure;

export interface InvoiceItemSender {
  create(item: InvoiceItemRequest): Promise<ItemSendOutcome>;
}

/** Maps an SDK error to what the loop does about an invoice-item request (see the policy above). */
export function classifyItemError(err: unknown): StripeFailure {
  const e = (err ?? {}) as SdkError;
  if (e.statusCode === 400 && (e.type === "StripeIdempotencyError" || e.rawType === "idempotency_error")) {
    return {
      kind: "rejected",
      status: 400,
      code: "idempotency_error",
      message: `${messageOf(err)} (an earlier request with this key may have created the item: check Stripe before sending it again)`,
    };
  }
  return classifyFailure(err);
}

export function createInvoiceItemSender(stripe: Stripe, limiter: RateLimiter): InvoiceItemSender {
  return {
    async create(item) {
      const done = await limiter.acquire();
      try {
        const created = await stripe.invoiceItems.create(
          {
            customer: item.stripeCustomerId,
            amount: item.amount,
            currency: item.currency.toLowerCase(),
            description: item.description,
            period: {
              start: Math.floor(item.period.start.getTime() / 1000),
              end: Math.floor(item.period.end.getTime() / 1000),
            },
            metadata: item.metadata,
          },
          { idempotencyKey: item.idempotencyKey },
        );
        return { kind: "created", id: created.id };
      } catch (err) {
        return classifyItemError(err);
      } finally {
        done();
      }
    },
  };
}

/**
 * The sender from configuration, or undefined without STRIPE_SECRET_KEY. Its own limiter: items go after the meter
 * events of the same job, never beside them.
 */
export function invoiceItemSenderFrom(config: Config): InvoiceItemSender | undefined {
  const stripe = createStripeClient(config);
  return stripe ? createInvoiceItemSender(stripe, new RateLimiter(stripeMaxRps(config))) : undefined;
}

/** One kind of invoice item: where its rows are and where Stripe's answers go. */
export interface ItemQueue<Row> {
  /** The item as logs name it ("a credit item"). */
  readonly noun: string;
  /**
   * Rows still to send of mapped customers (a bounded batch, fewest attempts first, then oldest), and how many wait
   * for a mapping.
   */
  load(): Promise<{ rows: Row[]; unmapped: number }>;
  requestOf(row: Row): InvoiceItemRequest;
  /** The row's identity in the summary's failures and in logs. */
  identify(row: Row): Record<string, string>;
  /** Records Stripe's answer on the row: created (sent), rejected (error, not resent), or an attempt to repeat. */
  record(row: Row, outcome: ItemSendOutcome): Promise<void>;
}

export interface ItemSummary {
  sent: number;
  failed: number;
  retry_later: number;
  /** Rows of customers without a stripe_customer_id (not sent; they wait for one). */
  unmapped: number;
  /** Why the run stopped before the end of its batch, if it did. */
  stopped: string | null;
  failures: ItemFailure[];
}

/** A refused row: its identity (ItemQueue.identify) and Stripe's answer. */
export interface ItemFailure {
  status: number;
  code: string;
  message: string;
  [identity: string]: string | number;
}

const MAX_LISTED = 20;

/** Sends a queue's rows in its order, under the policy above. */
export async function sendItems<Row>(
  queue: ItemQueue<Row>,
  sender: InvoiceItemSender,
  log: Logger,
  signal?: AbortSignal,
): Promise<ItemSummary> {
  const { rows, unmapped } = await queue.load();
  const summary: ItemSummary = { sent: 0, failed: 0, retry_later: 0, unmapped, stopped: null, failures: [] };
  for (const row of rows) {
    if (signal?.aborted) summary.stopped = "shutting down";
    if (summary.stopped) break;
    const outcome = await sender.create(queue.requestOf(row));
    await queue.record(row, outcome);
    if (outcome.kind === "created") {
      summary.sent += 1;
    } else if (outcome.kind === "rejected") {
      const { kind: _kind, ...error } = outcome;
      summary.failed += 1;
      if (summary.failures.length < MAX_LISTED) summary.failures.push({ ...queue.identify(row), ...error });
      log.warn({ ...queue.identify(row), ...error }, `Stripe refused ${queue.noun}`);
    } else {
      summary.retry_later += 1;
      summary.stopped = `${outcome.kind}: ${outcome.message}; the next run resends with the same idempotency key`;
    }
  }
  if (summary.stopped) log.warn({ reason: summary.stopped, item: queue.noun }, "Stripe invoice items stopped early");
  return summary;
}
