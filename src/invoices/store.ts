// Invoice rows, their yearly number counters and the adjustments carried between them (SQL only).
import { randomBytes } from "node:crypto";
import type { Queryable } from "../db/types.js";
import { Dec } from "../pricing/money.js";
import type { Period } from "../pricing/segments.js";
import type { CarriedFigure, FigureKind, StoredFigure } from "./rules.js";

export type InvoiceStatus = "draft" | "final";

export interface InvoiceRow {
  id: string;
  customer: string;
  period: Period;
  status: InvoiceStatus;
  number: string | null;
  currency: string | null;
  /** The final document (JSON text), null while draft. */
  document: string | null;
  /** The final invoice's own figures (JSON text), null while draft. */
  figures: string | null;
  finalizedAt: Date | null;
}

interface Row {
  id: string;
  customer_id: string;
  period_start: Date;
  period_end: Date;
  status: InvoiceStatus;
  number: string | null;
  currency: string | null;
  document: string | null;
  figures: string | null;
  finalized_at: Date | null;
}

const COLUMNS = "id, customer_id, period_start, period_end, status, number, currency, document, figures, finalized_at";

const fromRow = (r: Row): InvoiceRow => ({
  id: r.id,
  customer: r.customer_id,
  period: { start: r.period_start, end: r.period_end },
  status: r.status,
  number: r.number,
  currency: r.currency,
  document: r.document,
  figures: r.figures,
  finalizedAt: r.finalized_at,
});

export const newInvoiceId = (): string => `in_${randomBytes(12).toString("base64url")}`;

/** The customer's draft of a period, created if missing (with or without a subscription: adjustments need one). */
export async function ensureDraft(q: Queryable, customer: string, period: Period): Promise<void> {
  await q.query(
    `INSERT INTO invoices (id, customer_id, period_start, period_end) VALUES ($1, $2, $3, $4)
     ON CONFLICT (customer_id, period_start) DO NOTHING`,
    [newInvoiceId(), customer, period.start, period.end],
  );
}

export async function getInvoice(q: Queryable, id: string): Promise<InvoiceRow | undefined> {
  const { rows } = await q.query<Row>(`SELECT ${COLUMNS} FROM invoices WHERE id = $1`, [id]);
  return rows[0] ? fromRow(rows[0]) : undefined;
}

export async function invoiceOf(q: Queryable, customer: string, periodStart: Date): Promise<InvoiceRow | undefined> {
  const { rows } = await q.query<Row>(`SELECT ${COLUMNS} FROM invoices WHERE customer_id = $1 AND period_start = $2`, [
    customer,
    periodStart,
  ]);
  return rows[0] ? fromRow(rows[0]) : undefined;
}

export interface InvoiceFilter {
  customer?: string | undefined;
  status?: InvoiceStatus | undefined;
  /** Invoices whose period starts in [from, to). */
  periodStarts?: { from: Date; to: Date } | undefined;
  limit: number;
}

/** Newest period first, then by customer. */
export async function listInvoices(q: Queryable, f: InvoiceFilter): Promise<InvoiceRow[]> {
  const { rows } = await q.query<Row>(
    `SELECT ${COLUMNS} FROM invoices
     WHERE ($1::text IS NULL OR customer_id = $1) AND ($2::text IS NULL OR status = $2)
       AND ($3::timestamptz IS NULL OR (period_start >= $3 AND period_start < $4))
     ORDER BY period_start DESC, customer_id LIMIT $5`,
    [f.customer ?? null, f.status ?? null, f.periodStarts?.from ?? null, f.periodStarts?.to ?? null, f.limit],
  );
  return rows.map(fromRow);
}

/** The row locked for this transaction (a finalization or a correction of it waits for the other). */
export async function lockInvoice(tx: Queryable, id: string): Promise<InvoiceRow | undefined> {
  const { rows } = await tx.query<Row>(`SELECT ${COLUMNS} FROM invoices WHERE id = $1 FOR UPDATE`, [id]);
  return rows[0] ? fromRow(rows[0]) : undefined;
}

/** Drafts of periods that ended at or before `endedBy`, oldest period first. */
export async function draftsEndedBy(q: Queryable, endedBy: Date): Promise<InvoiceRow[]> {
  const { rows } = await q.query<Row>(
    `SELECT ${COLUMNS} FROM invoices WHERE status = 'draft' AND period_end <= $1 ORDER BY period_start, customer_id`,
    [endedBy],
  );
  return rows.map(fromRow);
}

/** Final invoices whose period ended after `after` (those still open to late events), oldest first. */
export async function finalsEndedAfter(q: Queryable, after: Date): Promise<InvoiceRow[]> {
  const { rows } = await q.query<Row>(
    `SELECT ${COLUMNS} FROM invoices WHERE status = 'final' AND period_end > $1 ORDER BY period_start, customer_id`,
    [after],
  );
  return rows.map(fromRow);
}

export async function latestFinalPeriod(q: Queryable): Promise<Date | null> {
  const { rows } = await q.query<{ p: Date | null }>(
    "SELECT max(period_start) AS p FROM invoices WHERE status = 'final'",
    [],
  );
  return rows[0]?.p ?? null;
}

/** The customer's earliest draft after a period, locked: where a correction of that period goes. */
export async function lockNextDraft(tx: Queryable, customer: string, after: Date): Promise<InvoiceRow | undefined> {
  const { rows } = await tx.query<Row>(
    `SELECT ${COLUMNS} FROM invoices WHERE customer_id = $1 AND status = 'draft' AND period_start > $2
     ORDER BY period_start LIMIT 1 FOR UPDATE`,
    [customer, after],
  );
  return rows[0] ? fromRow(rows[0]) : undefined;
}

/** The next number of the year; the counter row stays locked until the caller's transaction ends. */
export async function takeNumber(tx: Queryable, year: number): Promise<number> {
  const { rows } = await tx.query<{ n: string }>(
    `INSERT INTO invoice_numbers (year, last_number) VALUES ($1, 1)
     ON CONFLICT (year) DO UPDATE SET last_number = invoice_numbers.last_number + 1
     RETURNING last_number::text AS n`,
    [year],
  );
  return Number(rows[0]?.n);
}

export async function saveFinal(
  tx: Queryable,
  id: string,
  f: { number: string; currency: string | null; total: string; figures: string; document: string; at: Date },
): Promise<void> {
  await tx.query(
    `UPDATE invoices SET status = 'final', number = $2, currency = $3, total = $4, figures = $5, document = $6,
       finalized_at = $7
     WHERE id = $1 AND status = 'draft'`,
    [id, f.number, f.currency, f.total, f.figures, f.document, f.at],
  );
}

/** Everything carried so far from a final invoice, per figure (on drafts and final invoices alike). */
export async function carriedFrom(q: Queryable, adjusts: string): Promise<CarriedFigure[]> {
  const { rows } = await q.query<{
    kind: FigureKind;
    meter: string | null;
    charge: string | null;
    quantity: string;
    amount: string;
  }>(
    `SELECT kind, meter, charge, sum(quantity)::text AS quantity, sum(amount)::text AS amount
     FROM invoice_adjustments WHERE adjusts = $1 GROUP BY kind, meter, charge`,
    [adjusts],
  );
  return rows.map((r) => ({ ...r, quantity: new Dec(r.quantity), amount: new Dec(r.amount) }));
}

interface NewAdjustment {
  invoice: string;
  adjusts: string;
  kind: FigureKind;
  meter: string | null;
  charge: string | null;
  quantity: Dec;
  amount: Dec;
  currency: string | null;
  asOfQuantity: Dec;
  asOfAmount: Dec;
  asOf: Date;
}

export async function addAdjustments(tx: Queryable, items: readonly NewAdjustment[]): Promise<number> {
  if (items.length === 0) return 0;
  const { rowCount } = await tx.query(
    `INSERT INTO invoice_adjustments
       (invoice_id, adjusts, meter, quantity, amount, currency, as_of_quantity, as_of_amount, as_of, kind, charge)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::numeric[], $5::numeric[], $6::text[],
                          $7::numeric[], $8::numeric[], $9::timestamptz[], $10::text[], $11::text[])`,
    [
      items.map((i) => i.invoice),
      items.map((i) => i.adjusts),
      items.map((i) => i.meter),
      items.map((i) => i.quantity.toFixed()),
      items.map((i) => i.amount.toFixed()),
      items.map((i) => i.currency),
      items.map((i) => i.asOfQuantity.toFixed()),
      items.map((i) => i.asOfAmount.toFixed()),
      items.map((i) => i.asOf),
      items.map((i) => i.kind),
      items.map((i) => i.charge),
    ],
  );
  return rowCount;
}

/** One line per (adjusted invoice, figure) on a draft or final invoice: the sum of what was carried there. */
export interface AdjustmentLine {
  invoice: string;
  adjusts: string;
  adjustsNumber: string;
  adjustsPeriod: Period;
  /** What it corrects: a meter's usage or base fees, a fixed charge, or credits and other changes. */
  kind: FigureKind;
  meter: string | null;
  /** A fixed charge's key, and its name (of the charge's latest version). */
  charge: string | null;
  chargeName: string | null;
  quantity: Dec;
  amount: Dec;
  currency: string | null;
}

export async function adjustmentLines(q: Queryable, invoiceIds: readonly string[]): Promise<AdjustmentLine[]> {
  if (invoiceIds.length === 0) return [];
  const { rows } = await q.query<{
    invoice_id: string;
    adjusts: string;
    number: string;
    period_start: Date;
    period_end: Date;
    kind: FigureKind;
    meter: string | null;
    charge: string | null;
    charge_name: string | null;
    quantity: string;
    amount: string;
    currency: string | null;
  }>(
    `SELECT a.invoice_id, a.adjusts, f.number, f.period_start, f.period_end, a.kind, a.meter, a.charge,
            (SELECT v.name FROM fixed_charge_versions v WHERE v.charge = a.charge
             ORDER BY v.effective_from DESC, v.plan_key LIMIT 1) AS charge_name,
            sum(a.quantity)::text AS quantity, sum(a.amount)::text AS amount, f.currency
     FROM invoice_adjustments a JOIN invoices f ON f.id = a.adjusts
     WHERE a.invoice_id = ANY($1::text[])
     GROUP BY a.invoice_id, a.adjusts, f.number, f.period_start, f.period_end, a.kind, a.meter, a.charge, f.currency
     ORDER BY f.period_start, f.number, a.kind = 'fixed', a.meter NULLS FIRST, a.kind DESC, a.charge`,
    [invoiceIds],
  );
  return rows
    .map((r) => ({
      invoice: r.invoice_id,
      adjusts: r.adjusts,
      adjustsNumber: r.number,
      adjustsPeriod: { start: r.period_start, end: r.period_end },
      kind: r.kind,
      meter: r.meter,
      charge: r.charge,
      chargeName: r.charge_name,
      quantity: new Dec(r.quantity),
      amount: new Dec(r.amount),
      currency: r.currency,
    }))
    .filter((l) => !l.quantity.isZero() || !l.amount.isZero());
}

/**
 * The final invoices of a period, per customer: their own figures as frozen (not what was carried into them), for
 * every customer or those given.
 */
export async function finalFiguresOf(
  q: Queryable,
  periodStart: Date,
  customers?: readonly string[],
): Promise<Map<string, StoredFigure[]>> {
  const { rows } = await q.query<{ customer_id: string; figures: string }>(
    `SELECT customer_id, figures FROM invoices
     WHERE status = 'final' AND period_start = $1 AND ($2::text[] IS NULL OR customer_id = ANY ($2::text[]))`,
    [periodStart, customers ?? null],
  );
  return new Map(rows.map((r) => [r.customer_id, JSON.parse(r.figures) as StoredFigure[]]));
}

/** A customer's invoices of some periods, by period start (epoch ms): status and, once final, the document. */
export async function invoiceStatesOf(
  q: Queryable,
  customer: string,
  periodStarts: readonly Date[],
): Promise<Map<number, { status: InvoiceStatus; document: string | null }>> {
  const { rows } = await q.query<{ period_start: Date; status: InvoiceStatus; document: string | null }>(
    "SELECT period_start, status, document FROM invoices WHERE customer_id = $1 AND period_start = ANY ($2::timestamptz[])",
    [customer, periodStarts.map((d) => d.toISOString())],
  );
  return new Map(rows.map((r) => [new Date(r.period_start).getTime(), { status: r.status, document: r.document }]));
}
