// Prepaid credits in Stripe: once a period's invoice is final — a period of the customer's own billing calendar — the
// credit lines frozen on it (what each grant applied to the period) are written as pending items, then sent as
// negative invoice items (POST /v1/invoiceitems) with a deterministic Idempotency-Key per (customer, period, grant),
// by itemSender.ts's sender and loop. So Stripe gets
// exactly the credits of the final invoice; later changes of those credits are adjustments of a later invoice, sent
// as its invoice items (stripe/invoiceItems.ts). A period with no invoice at all (before invoices existed) takes the
// ledger's credits. The row is the real guard — Stripe keeps keys for 24 hours — so a 'sent' item is never sent
// again; a timeout or 5xx retries with the same key on the next run. Stripe adds such items to the customer's next
// invoice, with `period` set to the Tally period they credit.
import { createHash } from "node:crypto";
import { BillingCalendar, type BillingPeriod } from "../billing/calendar.js";
import { calendarsOf } from "../billing/subscriptions.js";
import type { Clock } from "../clock.js";
import type { Config } from "../config.js";
import { type CreditLedgers, creditsOf, toMinor } from "../credits/ledger.js";
import type { Db, Queryable } from "../db/types.js";
import { draftHorizon } from "../invoices/rules.js";
import { invoiceStatesOf, latestFinalPeriod } from "../invoices/store.js";
import type { Logger } from "../logger.js";
import { Dec, formatMoney } from "../pricing/money.js";
import { type ItemQueue, type ItemSummary, invoiceItemSenderFrom, sendItems } from "./itemSender.js";
import { periodLabel } from "./periods.js";
import { readSyncState } from "./status.js";

/** A period's credits go to Stripe this long after it ends (late events in that time still count). */
const CREDIT_SETTLE_MS = 3_600_000;
const SETTLE_MAX_CUSTOMERS = 200;
const SEND_MAX = 500;

type CreditItemSummary = ItemSummary & { settled_periods: number; pending: number };

interface ItemRow {
  customer_id: string;
  period_start: Date;
  period_end: Date;
  grant_id: string;
  amount: string;
  currency: string;
  idempotency_key: string;
  stripe_customer_id: string;
}

type Period = BillingPeriod;
type ToSettle = { customer_id: string; first: Date; closed: Period[] };
type Credit = { grant: string; currency: string; amount: Dec };

const keyOf = (install: string, customer: string, period: Date, grant: string) =>
  `tally-credit-${createHash("sha256").update(`${install}\u0000${customer}\u0000${period.toISOString()}\u0000${grant}`).digest("hex").slice(0, 40)}`;

/** The credit lines of a final invoice's document: per grant, the (positive) credits applied. */
function frozenCredits(document: string): Credit[] {
  const doc = JSON.parse(document) as {
    currency: string | null;
    lines: { kind: string; grant?: string; amount: string }[];
  };
  return doc.lines
    .filter((l) => l.kind === "credit" && l.grant && doc.currency)
    .map((l) => ({ grant: l.grant as string, currency: doc.currency as string, amount: new Dec(l.amount).negated() }))
    .filter((c) => c.amount.gt(0));
}

/** The customer's periods from the one holding `first` that ended by `closedBefore`. */
function closedPeriods(calendar: BillingCalendar, first: Date, closedBefore: Date): Period[] {
  const out: Period[] = [];
  for (let p = calendar.periodContaining(first); p.end <= closedBefore; p = calendar.next(p)) out.push(p);
  return out;
}

/**
 * Customers with a closed period of their own calendar not settled yet (since the period of their first grant), with
 * that first grant and those closed periods, so those fully settled never take the places of those still to do; the rest
 * follow in the next runs. The database counts the settled periods against each customer's closed ones (parameters).
 */
async function customersToSettle(db: Db, closedBefore: Date): Promise<ToSettle[]> {
  const { rows: candidates } = await db.query<{ customer_id: string; first: Date }>(
    `SELECT g.customer_id, min(g.effective_at) AS first
     FROM credit_grants g JOIN customers c ON c.id = g.customer_id
     WHERE c.stripe_customer_id IS NOT NULL
     GROUP BY g.customer_id HAVING min(g.effective_at) < $1`,
    [closedBefore],
  );
  if (candidates.length === 0) return [];
  const calendars = await calendarsOf(
    db,
    candidates.map((c) => c.customer_id),
  );
  const all = candidates.map((c) => {
    const calendar = calendars.get(c.customer_id) ?? new BillingCalendar([]);
    return { customer_id: c.customer_id, first: c.first, closed: closedPeriods(calendar, c.first, closedBefore) };
  });
  const open = all.filter((c) => c.closed.length > 0);
  const { rows } = await db.query<{ c: string }>(
    `SELECT t.c FROM unnest($1::text[], $2::timestamptz[], $3::int[]) AS t(c, f, n)
     WHERE (SELECT count(*) FROM stripe_credit_periods s WHERE s.customer_id = t.c AND s.period_start >= t.f) < t.n
     ORDER BY t.c LIMIT ${SETTLE_MAX_CUSTOMERS}`,
    [open.map((c) => c.customer_id), open.map((c) => c.closed[0]?.start), open.map((c) => c.closed.length)],
  );
  const byId = new Map(open.map((c) => [c.customer_id, c]));
  return rows.flatMap((r) => byId.get(r.c) ?? []);
}

/** The closed periods of a customer since its first grant that are not settled yet. */
async function openPeriods(db: Db, customer: ToSettle): Promise<Period[]> {
  const done = await db.query<{ period_start: Date }>(
    "SELECT period_start FROM stripe_credit_periods WHERE customer_id = $1",
    [customer.customer_id],
  );
  const known = new Set(done.rows.map((d) => d.period_start.getTime()));
  return customer.closed.filter((p) => !known.has(p.start.getTime()));
}

/** Writes a period's pending items and marks it settled. */
async function settlePeriod(
  tx: Queryable,
  customer: string,
  period: Period,
  credits: Credit[],
  ctx: { install: string; now: Date },
): Promise<void> {
  for (const c of credits) {
    await tx.query(
      `INSERT INTO stripe_credit_items (customer_id, period_start, period_end, grant_id, amount, currency,
                                        idempotency_key, created_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING`,
      [
        customer,
        period.start,
        period.end,
        c.grant,
        c.amount.toFixed(),
        c.currency,
        keyOf(ctx.install, customer, period.start, c.grant),
        ctx.now,
      ],
    );
  }
  await tx.query(
    `INSERT INTO stripe_credit_periods (customer_id, period_start, settled_at, items) VALUES ($1, $2, $3, $4)
     ON CONFLICT DO NOTHING`,
    [customer, period.start, ctx.now, credits.length],
  );
}

/**
 * Writes the pending items of every period that ended CREDIT_SETTLE_MS ago, whose invoice is final (or that has
 * none), and that was not settled yet.
 */
async function settle(db: Db, ledgers: CreditLedgers, now: Date, install: string, maxAgeDays: number): Promise<number> {
  const closedBefore = new Date(now.getTime() - CREDIT_SETTLE_MS);
  // Periods from here on get invoices (invoices/rules.ts): one without its invoice yet waits for it.
  const invoicedFrom = draftHorizon(now, maxAgeDays, await latestFinalPeriod(db));
  let settled = 0;
  for (const r of await customersToSettle(db, closedBefore)) {
    const open = await openPeriods(db, r);
    if (open.length === 0) continue;
    const invoices = await invoiceStatesOf(
      db,
      r.customer_id,
      open.map((p) => p.start),
    );
    // A draft may still change: its credits go to Stripe once it is final.
    const ready = open.filter((p) => {
      const invoice = invoices.get(p.start.getTime());
      return invoice ? invoice.status === "final" : p.start < invoicedFrom;
    });
    if (ready.length === 0) continue;
    const needsLedger = ready.some((p) => !invoices.has(p.start.getTime()));
    const ledger = needsLedger ? (await ledgers.read(r.customer_id, now, async () => undefined)).ledger : undefined;
    await db.transaction(async (tx) => {
      for (const period of ready) {
        const final = invoices.get(period.start.getTime())?.document;
        const credits = final
          ? frozenCredits(final)
          : ledger
            ? creditsOf(ledger, period)
                .filter((c) => c.amount.gt(0))
                .map((c) => ({ grant: c.grant.id, currency: c.grant.currency, amount: c.amount }))
            : [];
        await settlePeriod(tx, r.customer_id, period, credits, { install, now });
        settled += 1;
      }
    });
  }
  return settled;
}

/** The pending credit items, as negative invoice items. */
function creditQueue(db: Db, now: Date): ItemQueue<ItemRow> {
  return {
    noun: "a credit item",
    async load() {
      const { rows } = await db.query<ItemRow>(
        `SELECT i.customer_id, i.period_start, i.period_end, i.grant_id, i.amount::text AS amount, i.currency,
                i.idempotency_key, c.stripe_customer_id
         FROM stripe_credit_items i JOIN customers c ON c.id = i.customer_id
         WHERE i.status = 'pending' AND c.stripe_customer_id IS NOT NULL
         ORDER BY i.attempts, i.created_at, i.customer_id, i.period_start, i.grant_id LIMIT ${SEND_MAX}`,
        [],
      );
      const unmapped = await db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM stripe_credit_items i JOIN customers c ON c.id = i.customer_id
         WHERE i.status = 'pending' AND c.stripe_customer_id IS NULL`,
        [],
      );
      return { rows, unmapped: unmapped.rows[0]?.n ?? 0 };
    },
    requestOf(r) {
      const credited = new Dec(r.amount);
      return {
        idempotencyKey: r.idempotency_key,
        stripeCustomerId: r.stripe_customer_id,
        amount: -Number(toMinor(credited, r.currency)),
        currency: r.currency,
        description: `Prepaid credits applied in ${periodLabel({ start: r.period_start, end: r.period_end })}: -${formatMoney(credited, r.currency)} ${r.currency} (grant ${r.grant_id})`,
        period: { start: r.period_start, end: r.period_end },
        metadata: {
          tally_customer: r.customer_id,
          tally_period: r.period_start.toISOString(),
          tally_grant: r.grant_id,
        },
      };
    },
    identify: (r) => ({ customer: r.customer_id, period: r.period_start.toISOString(), grant: r.grant_id }),
    async record(r, outcome) {
      const where = [r.customer_id, r.period_start, r.grant_id];
      const match = "customer_id = $1 AND period_start = $2 AND grant_id = $3";
      if (outcome.kind === "created") {
        await db.query(
          `UPDATE stripe_credit_items SET status = 'sent', stripe_id = $4, sent_at = $5, attempts = attempts + 1,
             error_code = NULL, error_message = NULL WHERE ${match}`,
          [...where, outcome.id, now],
        );
      } else if (outcome.kind === "rejected") {
        await db.query(
          `UPDATE stripe_credit_items SET status = 'error', error_code = $4, error_message = $5,
             attempts = attempts + 1 WHERE ${match}`,
          [...where, outcome.code, outcome.message],
        );
      } else {
        await db.query(`UPDATE stripe_credit_items SET attempts = attempts + 1, error_message = $4 WHERE ${match}`, [
          ...where,
          outcome.message,
        ]);
      }
    },
  };
}

interface CreditItemSync {
  run(): Promise<CreditItemSummary | undefined>;
}

/** The credit side of the sync-stripe job (off, like the rest of it, without STRIPE_SECRET_KEY). */
export function createCreditItemSync(d: {
  db: Db;
  clock: Clock;
  config: Config;
  log: Logger;
  credits: CreditLedgers;
  signal?: AbortSignal;
}): CreditItemSync {
  const sender = invoiceItemSenderFrom(d.config);
  return {
    async run() {
      if (!sender) return undefined;
      const now = d.clock.now();
      const { installId } = await readSyncState(d.db);
      const settled = await settle(d.db, d.credits, now, installId, d.config.TALLY_EVENT_MAX_AGE_DAYS);
      const sent = await sendItems(creditQueue(d.db, now), sender, d.log, d.signal);
      const { rows } = await d.db.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM stripe_credit_items WHERE status = 'pending'",
        [],
      );
      return { settled_periods: settled, ...sent, pending: rows[0]?.n ?? 0 };
    },
  };
}

interface CreditItemRow {
  customer: string;
  grant: string;
  amount: string;
  currency: string;
  status: "pending" | "sent" | "error";
  stripe_invoice_item: string | null;
  error: string | null;
}

/** The credit items of each customer's period, for the reconciliation. */
export async function creditItemsOf(
  db: Queryable,
  scope: { customer: string; period: { start: Date } }[],
): Promise<CreditItemRow[]> {
  const { rows } = await db.query<{
    customer_id: string;
    grant_id: string;
    amount: string;
    currency: string;
    status: CreditItemRow["status"];
    stripe_id: string | null;
    error_message: string | null;
  }>(
    `SELECT i.customer_id, i.grant_id, i.amount::text AS amount, i.currency, i.status, i.stripe_id, i.error_message
     FROM unnest($1::text[], $2::timestamptz[]) AS t(c, p)
     JOIN stripe_credit_items i ON i.customer_id = t.c AND i.period_start = t.p
     ORDER BY i.customer_id, i.grant_id`,
    [scope.map((s) => s.customer), scope.map((s) => s.period.start)],
  );
  return rows.map((r) => ({
    customer: r.customer_id,
    grant: r.grant_id,
    amount: formatMoney(new Dec(r.amount), r.currency),
    currency: r.currency,
    status: r.status,
    stripe_invoice_item: r.stripe_id,
    error: r.error_message,
  }));
}
