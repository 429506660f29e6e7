// Base fees and fixed charges in Stripe, only with TALLY_STRIPE_FEES=invoice_items (for Stripe subscriptions that
// carry metered prices only; by default Stripe's own subscription prices carry them and prorate them itself, and
// sending them too would bill twice). Once a period's invoice is final, each base-fee and fixed-charge line frozen on
// it — prorated as the invoice shows it — is written as a pending item and sent once as an invoice item
// (POST /v1/invoiceitems) with a deterministic Idempotency-Key per (invoice, line), by itemSender.ts's sender and
// loop. Later changes of those lines are adjustments of a later invoice, sent as its invoice items (invoiceItems.ts).
import { createHash } from "node:crypto";
import type { Clock } from "../clock.js";
import type { Config } from "../config.js";
import type { Db, Queryable } from "../db/types.js";
import type { Logger } from "../logger.js";
import { Dec, formatMoney, minorUnits } from "../pricing/money.js";
import { type ItemQueue, type ItemSummary, invoiceItemSenderFrom, sendItems } from "./itemSender.js";
import { periodLabel } from "./periods.js";
import { readSyncState } from "./status.js";

const SETTLE_MAX = 200;
const SEND_MAX = 500;
const DAY_MS = 86_400_000;

/** A fee line of a frozen invoice document. */
interface FeeLine {
  kind: "base_fee" | "fixed";
  plan: string;
  meter: string | null;
  charge?: string;
  description: string;
  amount: string;
  segment: { start: string; end: string };
}

interface ItemRow {
  invoice_id: string;
  line_key: string;
  customer_id: string;
  period_start: Date;
  period_end: Date;
  description: string;
  amount: string;
  currency: string;
  idempotency_key: string;
  stripe_customer_id: string;
}

/** A line's identity within its invoice: the same plan twice in a period (ended, then again) has two segments. */
const lineKey = (l: FeeLine) => [l.kind, l.plan, l.meter ?? l.charge ?? "", l.segment.start, l.segment.end].join("|");

const keyOf = (install: string, invoice: string, line: string) =>
  `tally-fee-${createHash("sha256").update(`${install}\u0000${invoice}\u0000${line}`).digest("hex").slice(0, 40)}`;

/** The base-fee and fixed-charge lines of a final invoice's document with an amount. */
function feeLines(document: string): { currency: string | null; lines: FeeLine[] } {
  const doc = JSON.parse(document) as { currency: string | null; lines: (FeeLine | { kind: string })[] };
  const lines = doc.lines.filter(
    (l): l is FeeLine => (l.kind === "base_fee" || l.kind === "fixed") && !new Dec((l as FeeLine).amount).isZero(),
  );
  return { currency: doc.currency, lines };
}

/**
 * Writes the fee lines of final invoices not settled yet (of customers mapped to Stripe, whose period ended within
 * the window late events are accepted in: switching the setting on does not send years of history) as pending rows.
 */
async function settle(db: Db, now: Date, install: string, maxAgeDays: number): Promise<number> {
  const { rows } = await db.query<{
    id: string;
    customer_id: string;
    period_start: Date;
    period_end: Date;
    document: string;
  }>(
    `SELECT f.id, f.customer_id, f.period_start, f.period_end, f.document
     FROM invoices f JOIN customers c ON c.id = f.customer_id
     WHERE f.status = 'final' AND c.stripe_customer_id IS NOT NULL AND f.period_end > $1
       AND NOT EXISTS (SELECT 1 FROM stripe_fee_invoices s WHERE s.invoice_id = f.id)
     ORDER BY f.period_end, f.id LIMIT ${SETTLE_MAX}`,
    [new Date(now.getTime() - maxAgeDays * DAY_MS)],
  );
  for (const f of rows) {
    const { currency, lines } = feeLines(f.document);
    await db.transaction(async (tx) => {
      for (const l of currency ? lines : []) {
        const key = lineKey(l);
        await tx.query(
          `INSERT INTO stripe_fee_items (invoice_id, line_key, customer_id, period_start, period_end, kind,
                                         description, amount, currency, idempotency_key, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING`,
          [
            f.id,
            key,
            f.customer_id,
            f.period_start,
            f.period_end,
            l.kind,
            l.description,
            l.amount,
            currency,
            keyOf(install, f.id, key),
            now,
          ],
        );
      }
      await tx.query(
        "INSERT INTO stripe_fee_invoices (invoice_id, settled_at, items) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        [f.id, now, currency ? lines.length : 0],
      );
    });
  }
  return rows.length;
}

/** The pending fee items, oldest first. */
function feeQueue(db: Db): ItemQueue<ItemRow> {
  const where = "i.status = 'pending'";
  return {
    noun: "a fee item",
    async load() {
      const { rows } = await db.query<ItemRow>(
        `SELECT i.invoice_id, i.line_key, i.customer_id, i.period_start, i.period_end, i.description,
                i.amount::text AS amount, i.currency, i.idempotency_key, c.stripe_customer_id
         FROM stripe_fee_items i JOIN customers c ON c.id = i.customer_id
         WHERE ${where} AND c.stripe_customer_id IS NOT NULL
         ORDER BY i.attempts, i.created_at, i.invoice_id, i.line_key LIMIT ${SEND_MAX}`,
        [],
      );
      const unmapped = await db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM stripe_fee_items i JOIN customers c ON c.id = i.customer_id
         WHERE ${where} AND c.stripe_customer_id IS NULL`,
        [],
      );
      return { rows, unmapped: unmapped.rows[0]?.n ?? 0 };
    },
    requestOf: (r) => ({
      idempotencyKey: r.idempotency_key,
      stripeCustomerId: r.stripe_customer_id,
      amount: new Dec(r.amount).times(new Dec(10).pow(minorUnits(r.currency))).toNumber(),
      currency: r.currency,
      description: `${r.description} (${periodLabel({ start: r.period_start, end: r.period_end })})`,
      period: { start: r.period_start, end: r.period_end },
      metadata: { tally_invoice: r.invoice_id, tally_line: r.line_key },
    }),
    identify: (r) => ({ invoice: r.invoice_id, line: r.line_key, customer: r.customer_id }),
    async record(r, outcome) {
      const set =
        outcome.kind === "created"
          ? { sql: "status = 'sent', stripe_id = $3, sent_at = now(),", arg: outcome.id }
          : outcome.kind === "rejected"
            ? {
                sql: "status = 'error', error_message = $3,",
                arg: `${outcome.status} ${outcome.code}: ${outcome.message}`,
              }
            : { sql: "error_message = $3,", arg: outcome.message };
      await db.query(
        `UPDATE stripe_fee_items SET ${set.sql} attempts = attempts + 1 WHERE invoice_id = $1 AND line_key = $2`,
        [r.invoice_id, r.line_key, set.arg],
      );
    },
  };
}

type FeeItemSummary = ItemSummary & { settled_invoices: number; pending: number };

/** The fee side of the sync-stripe job: on with TALLY_STRIPE_FEES=invoice_items and a Stripe key. */
export function createFeeItemSync(d: { db: Db; clock: Clock; config: Config; log: Logger; signal?: AbortSignal }) {
  const sender = d.config.TALLY_STRIPE_FEES === "invoice_items" ? invoiceItemSenderFrom(d.config) : undefined;
  return {
    async run(): Promise<FeeItemSummary | undefined> {
      if (!sender) return undefined;
      const { installId } = await readSyncState(d.db);
      const settled = await settle(d.db, d.clock.now(), installId, d.config.TALLY_EVENT_MAX_AGE_DAYS);
      const sent = await sendItems(feeQueue(d.db), sender, d.log, d.signal);
      const { rows } = await d.db.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM stripe_fee_items WHERE status = 'pending'",
        [],
      );
      return { settled_invoices: settled, ...sent, pending: rows[0]?.n ?? 0 };
    },
  };
}

/** The fee items of each customer's period, for the reconciliation. */
export async function feeItemsOf(db: Queryable, scope: { customer: string; period: { start: Date } }[]) {
  const { rows } = await db.query<{
    customer_id: string;
    kind: string;
    description: string;
    amount: string;
    currency: string;
    status: "pending" | "sent" | "error";
    stripe_id: string | null;
    error_message: string | null;
  }>(
    `SELECT i.customer_id, i.kind, i.description, i.amount::text AS amount, i.currency, i.status, i.stripe_id,
            i.error_message
     FROM unnest($1::text[], $2::timestamptz[]) AS t(c, p)
     JOIN stripe_fee_items i ON i.customer_id = t.c AND i.period_start = t.p
     ORDER BY i.customer_id, i.line_key`,
    [scope.map((s) => s.customer), scope.map((s) => s.period.start)],
  );
  return rows.map((r) => ({
    customer: r.customer_id,
    kind: r.kind,
    description: r.description,
    amount: formatMoney(new Dec(r.amount), r.currency),
    currency: r.currency,
    status: r.status,
    stripe_invoice_item: r.stripe_id,
    error: r.error_message,
  }));
}
