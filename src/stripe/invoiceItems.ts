// Adjustments as Stripe invoice items. Once a period's invoice is final its usage is no longer sent as meter events
// (stripe/targets); every difference carried from it afterwards (an adjustment row, immutable once written) becomes
// one invoice item (POST /v1/invoiceitems) pending on the customer's next Stripe invoice. Corrections of base fees and
// fixed charges (a backdated upgrade or seat change) go only with TALLY_STRIPE_FEES=invoice_items: by default Stripe's
// own subscription prices carry the fees and prorate such a change themselves, and an item would bill it twice. The request carries an
// Idempotency-Key made of the install id and the adjustment's id, so a resend after a lost answer creates nothing
// new; the row records the item's id (the real guard, since Stripe keeps keys for 24 hours only). The requests and
// what Stripe's answers mean are itemSender.ts's, shared with the credit items.
import type { Clock } from "../clock.js";
import type { Config } from "../config.js";
import type { Db, Queryable } from "../db/types.js";
import type { FigureKind, StoredFigure } from "../invoices/rules.js";
import type { Logger } from "../logger.js";
import { Dec, formatDecimal, formatMoney, minorUnits } from "../pricing/money.js";
import {
  type InvoiceItemRequest,
  type ItemQueue,
  type ItemSummary,
  invoiceItemSenderFrom,
  sendItems,
} from "./itemSender.js";
import { periodLabel } from "./periods.js";
import type { ReconciliationRow } from "./reconciliation.js";
import { readSyncState } from "./status.js";

interface Pending {
  id: string;
  amount: string;
  currency: string;
  kind: FigureKind;
  meter: string | null;
  charge: string | null;
  quantity: string;
  invoice_id: string;
  adjusts: string;
  number: string;
  period_start: Date;
  period_end: Date;
  customer_id: string;
  stripe_customer_id: string;
}

const BATCH = 500;

/** Corrections of base fees and fixed charges: sent only with TALLY_STRIPE_FEES=invoice_items. */
const FEE_KINDS = "('base_fee', 'fixed')";

/**
 * An adjustment to send: not sent, not refused, with an amount and a currency; a fee correction only when fees go as
 * invoice items ($1) and of a period that ended within the window late events are accepted in ($2), as the fee lines
 * themselves (switching the setting on does not send old corrections Stripe's subscription prorated itself).
 */
const TO_SEND = `a.stripe_invoice_item IS NULL AND a.stripe_error IS NULL AND a.amount <> 0 AND a.currency IS NOT NULL
  AND (a.kind NOT IN ${FEE_KINDS} OR ($1::boolean AND f.period_end > $2::timestamptz))`;

const DAY_MS = 86_400_000;

/** Which adjustments go to Stripe: usage and the rest always, fee corrections with fees as invoice items. */
interface Scope {
  fees: boolean;
  now: Date;
  maxAgeDays: number;
}

const scopeParams = (s: Scope) => [s.fees, new Date(s.now.getTime() - s.maxAgeDays * DAY_MS)];

/** The adjustments of final invoices not yet in Stripe. */
function adjustmentQueue(db: Db, install: string, scope: Scope): ItemQueue<Pending> {
  return {
    noun: "an invoice item",
    async load() {
      const { rows } = await db.query<Pending>(
        `SELECT a.id::text, a.amount::text, a.currency, a.kind, a.meter, a.charge, a.quantity::text, a.invoice_id,
                a.adjusts, f.number, f.period_start, f.period_end, f.customer_id, cu.stripe_customer_id
         FROM invoice_adjustments a JOIN invoices f ON f.id = a.adjusts JOIN customers cu ON cu.id = f.customer_id
         WHERE ${TO_SEND} AND cu.stripe_customer_id IS NOT NULL
         ORDER BY a.stripe_attempts, a.id LIMIT ${BATCH}`,
        scopeParams(scope),
      );
      const unmapped = await db.query<{ n: number }>(
        `SELECT count(*)::int AS n
         FROM invoice_adjustments a JOIN invoices f ON f.id = a.adjusts JOIN customers cu ON cu.id = f.customer_id
         WHERE ${TO_SEND} AND cu.stripe_customer_id IS NULL`,
        scopeParams(scope),
      );
      return { rows, unmapped: unmapped.rows[0]?.n ?? 0 };
    },
    requestOf: (r) => itemOf(r, install),
    identify: (r) => ({ adjustment: r.id, customer: r.customer_id }),
    async record(r, outcome) {
      if (outcome.kind === "created") {
        await db.query(
          `UPDATE invoice_adjustments SET stripe_invoice_item = $2, stripe_sent_at = now(),
             stripe_attempts = stripe_attempts + 1 WHERE id = $1`,
          [r.id, outcome.id],
        );
      } else if (outcome.kind === "rejected") {
        await db.query(
          "UPDATE invoice_adjustments SET stripe_error = $2, stripe_attempts = stripe_attempts + 1 WHERE id = $1",
          [r.id, `${outcome.status} ${outcome.code}: ${outcome.message}`],
        );
      } else {
        await db.query("UPDATE invoice_adjustments SET stripe_attempts = stripe_attempts + 1 WHERE id = $1", [r.id]);
      }
    },
  };
}

/** The invoice-item half of the sync-stripe job, from configuration (off without STRIPE_SECRET_KEY). */
export function createInvoiceItemSync(d: { db: Db; clock: Clock; config: Config; log: Logger; signal?: AbortSignal }) {
  const sender = invoiceItemSenderFrom(d.config);
  return {
    async run(): Promise<ItemSummary | undefined> {
      if (!sender) return undefined;
      const { installId } = await readSyncState(d.db);
      const scope = {
        fees: d.config.TALLY_STRIPE_FEES === "invoice_items",
        now: d.clock.now(),
        maxAgeDays: d.config.TALLY_EVENT_MAX_AGE_DAYS,
      };
      return sendItems(adjustmentQueue(d.db, installId, scope), sender, d.log, d.signal);
    },
  };
}

function itemOf(r: Pending, install: string): InvoiceItemRequest {
  const amount = new Dec(r.amount).times(new Dec(10).pow(minorUnits(r.currency)));
  return {
    idempotencyKey: `tally:${install}:adjustment:${r.id}`,
    stripeCustomerId: r.stripe_customer_id,
    amount: amount.toNumber(),
    currency: r.currency,
    // Only what never changes (meter keys, numbers): a resend must repeat the first request's parameters exactly.
    description: description(r),
    period: { start: r.period_start, end: r.period_end },
    metadata: { tally_adjustment: r.id, tally_invoice: r.invoice_id, tally_adjusts: r.adjusts },
  };
}

const description = (r: Pending) =>
  `Correction of invoice ${r.number} (${periodLabel({ start: r.period_start, end: r.period_end })}): ${changeOf(r)}`;

/** What an adjustment changes, in words that never change (meter and charge keys, numbers). */
function changeOf(r: Pending): string {
  if (r.kind === "fixed") return `${r.charge} (fixed charge)`;
  if (r.kind === "base_fee") return `${r.meter} base fee`;
  if (r.meter === null) return "credits and other changes";
  const quantity = new Dec(r.quantity);
  return `${r.meter} ${quantity.isNeg() ? "" : "+"}${formatDecimal(quantity)}`;
}

/**
 * The corrections of base fees and fixed charges of each customer's period (of its final invoice), as the
 * reconciliation lists them beside the fee items when fees go as invoice items.
 */
export async function feeAdjustmentsOf(db: Queryable, scope: { customer: string; period: { start: Date } }[]) {
  const { rows } = await db.query<Pending & { stripe_invoice_item: string | null; stripe_error: string | null }>(
    `SELECT a.id::text, a.amount::text, a.currency, a.kind, a.meter, a.charge, a.quantity::text, a.invoice_id,
            a.adjusts, f.number, f.period_start, f.period_end, f.customer_id, NULL AS stripe_customer_id,
            a.stripe_invoice_item, a.stripe_error
     FROM unnest($1::text[], $2::timestamptz[]) AS t(c, p)
     JOIN invoices f ON f.customer_id = t.c AND f.period_start = t.p AND f.status = 'final'
     JOIN invoice_adjustments a ON a.adjusts = f.id
     WHERE a.kind IN ${FEE_KINDS} AND a.amount <> 0 AND a.currency IS NOT NULL
     ORDER BY f.customer_id, a.id`,
    [scope.map((s) => s.customer), scope.map((s) => s.period.start)],
  );
  return rows.map((r) => ({
    customer: r.customer_id,
    kind: r.kind,
    description: description(r),
    amount: formatMoney(new Dec(r.amount), r.currency),
    currency: r.currency,
    status: r.stripe_invoice_item ? ("sent" as const) : r.stripe_error ? ("error" as const) : ("pending" as const),
    stripe_invoice_item: r.stripe_invoice_item,
    error: r.stripe_error,
    adjustment: r.id,
  }));
}

interface InvoiceItemsView {
  /** The final invoice of the period and its quantity of the meter when it was frozen. */
  invoice: { id: string; number: string; quantity: string };
  /** What was carried from it since, per meter, and where its invoice items stand. */
  carried_quantity: string;
  carried_amount: string;
  items: { sent: number; pending: number; failed: number; errors: string[] };
}

/**
 * The reconciliation of a period whose invoice is final: Stripe received the usage as meter events until then and
 * every later difference as an invoice item, so the difference is quantity − sent − carried quantity.
 */
export async function withInvoiceItems(
  db: Queryable,
  rows: ReconciliationRow[],
): Promise<(ReconciliationRow & { invoice_items?: InvoiceItemsView })[]> {
  // Each row's own customer period: one (customer, period start) pair per customer.
  const periodOf = new Map(rows.map((r) => [r.customer, r.period.start]));
  const { rows: finals } = await db.query<{
    id: string;
    customer_id: string;
    number: string;
    currency: string | null;
    figures: string;
    carried: string | null;
  }>(
    `SELECT f.id, f.customer_id, f.number, f.currency, f.figures,
            (SELECT json_agg(json_build_object('meter', a.meter, 'quantity', a.quantity::text, 'amount', a.amount::text,
                                               'sent', a.stripe_invoice_item IS NOT NULL, 'error', a.stripe_error))::text
             FROM invoice_adjustments a WHERE a.adjusts = f.id AND a.kind = 'usage') AS carried
     FROM unnest($1::text[], $2::timestamptz[]) AS t(c, p)
     JOIN invoices f ON f.customer_id = t.c AND f.period_start = t.p AND f.status = 'final'`,
    [[...periodOf.keys()], [...periodOf.values()]],
  );
  const byCustomer = new Map(finals.map((f) => [f.customer_id, f]));
  return rows.map((row) => {
    const f = byCustomer.get(row.customer);
    if (!f) return row;
    const figure = (JSON.parse(f.figures) as StoredFigure[]).find(
      (x) => x.meter === row.meter && (x.kind ?? "usage") === "usage",
    );
    const carried = (
      f.carried
        ? (JSON.parse(f.carried) as {
            meter: string | null;
            quantity: string;
            amount: string;
            sent: boolean;
            error: string | null;
          }[])
        : []
    ).filter((c) => c.meter === row.meter);
    const q = carried.reduce((a, c) => a.plus(c.quantity), new Dec(0));
    const amount = carried.reduce((a, c) => a.plus(c.amount), new Dec(0));
    const toSend = carried.filter((c) => !new Dec(c.amount).isZero());
    const items = {
      sent: toSend.filter((c) => c.sent).length,
      pending: toSend.filter((c) => !c.sent && !c.error).length,
      failed: toSend.filter((c) => c.error).length,
      errors: toSend.flatMap((c) => (c.error ? [c.error] : [])).slice(0, 5),
    };
    const difference = new Dec(row.quantity).minus(row.sent).minus(q);
    let status = row.status;
    if (status !== "unmapped") {
      if (items.failed > 0 || row.error_buckets > 0 || row.stale_buckets > 0) status = "error";
      else if (items.pending > 0 || row.pending_buckets > 0) status = "pending";
      else status = difference.times(row.stripe_scale).abs().gte(1) ? "pending" : "in_sync";
    }
    return {
      ...row,
      difference: formatDecimal(difference),
      status,
      invoice_items: {
        invoice: { id: f.id, number: f.number, quantity: figure?.quantity ?? "0" },
        carried_quantity: formatDecimal(q),
        carried_amount: f.currency ? formatMoney(amount, f.currency) : formatDecimal(amount),
        items,
      },
    };
  });
}
