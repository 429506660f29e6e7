// The invoice as a money record (pure): the invoice preview of a statement (its lines, credits and totals, as the
// API serves it and as finalization freezes it), and the invoice document: that preview plus the invoice's identity
// (id, number, status, finalized_at) and the adjustment lines carried to it, which count in its total.
import type { Statement } from "../billing/statement.js";
import type { StatementCredits } from "../credits/invoice.js";
import { Dec, formatDecimal, formatMoney, sum } from "../pricing/money.js";
import type { AdjustmentLine, InvoiceStatus } from "./store.js";

/** An invoice preview, or anything shaped like one (its fields vary with what pricing puts on an invoice). */
export type InvoicePreview = Record<string, unknown> & { currency: string | null; lines: unknown[]; total: string };

interface InvoiceHead {
  id: string;
  number: string | null;
  status: InvoiceStatus;
  finalizedAt: Date | null;
}

export interface MeterLabel {
  name: string;
  unit: string;
}

/** RFC 3339 in UTC without empty milliseconds, as every time in the API. */
export const rfc3339 = (d: Date): string => {
  const s = d.toISOString();
  return s.endsWith(".000Z") ? `${s.slice(0, -5)}Z` : s;
};

/** Amounts in the statement's currency (plain decimals when no subscription gave it one). */
export const statementMoney =
  (st: Statement) =>
  (d: Dec): string =>
    st.currency ? formatMoney(d, st.currency) : formatDecimal(d);

/** One negative line per grant that paid part of the period's usage (the summary shows the same lines). */
export function creditLines(st: Statement, credits: StatementCredits) {
  const money = statementMoney(st);
  return credits.lines.map((l) => ({
    meter: null,
    kind: "credit" as const,
    description: l.description,
    amount: money(l.amount),
    grant: l.grant,
  }));
}

/** subtotal, credits and total of a customer with grants (without grants, `total` alone, as before credits). */
export function creditTotals(st: Statement, c: StatementCredits | undefined) {
  const money = statementMoney(st);
  if (!c) return { total: money(st.invoice.total) };
  return { subtotal: money(c.subtotal), credits: money(c.credits), total: money(c.total) };
}

/** The invoice preview of a statement with its credits: one line per segment (per tier) and base fee, then credits. */
export function invoicePreview(st: Statement, credits?: StatementCredits) {
  const money = statementMoney(st);
  const lines = st.invoice.lines.map((l) => ({
    meter: l.meter,
    kind: l.kind,
    plan: l.plan,
    description: l.description,
    quantity: formatDecimal(l.quantity),
    amount: money(l.amount),
    segment: { start: rfc3339(l.segment.start), end: rfc3339(l.segment.end) },
    ...(l.tier !== undefined ? { tier: l.tier } : {}),
    ...(l.unitPrice !== undefined ? { unit_price: formatDecimal(l.unitPrice) } : {}),
    ...(l.dimensions ? { dimensions: l.dimensions } : {}),
    ...(l.charge ? { charge: l.charge } : {}),
    ...(l.proration
      ? {
          proration: {
            start: rfc3339(l.proration.start),
            end: rfc3339(l.proration.end),
            hours: l.proration.hours,
            period_hours: l.proration.periodHours,
          },
        }
      : {}),
    ...(l.trial ? { trial: true } : {}),
  }));
  return {
    customer: st.customer,
    period: { start: rfc3339(st.period.start), end: rfc3339(st.period.end) },
    currency: st.currency,
    lines: credits ? [...lines, ...creditLines(st, credits)] : lines,
    ...creditTotals(st, credits),
    as_of: rfc3339(st.asOf),
  };
}

/** "2026-10" for a UTC calendar month; else the period's bounds ("2026-10-17T09:00:00Z/2026-11-17T09:00:00Z"). */
export function periodLabel(p: { start: Date; end: Date }): string {
  const s = p.start;
  const monthEnd = Date.UTC(s.getUTCFullYear(), s.getUTCMonth() + 1, 1);
  const utcMonth = s.getTime() === Date.UTC(s.getUTCFullYear(), s.getUTCMonth(), 1) && p.end.getTime() === monthEnd;
  return utcMonth ? s.toISOString().slice(0, 7) : `${rfc3339(p.start)}/${rfc3339(p.end)}`;
}

const signed = (d: Dec): string => (d.isPositive() && !d.isZero() ? `+${formatDecimal(d)}` : formatDecimal(d));

function adjustmentDescription(a: AdjustmentLine, label: MeterLabel | undefined): string {
  const what = `correction of invoice ${a.adjustsNumber} (${periodLabel(a.adjustsPeriod)})`;
  if (a.kind === "fixed") return `${a.chargeName ?? a.charge}: ${what}`;
  if (a.meter === null) return `Credits and other changes: ${what}`;
  if (a.kind === "base_fee") return `${label?.name ?? a.meter}: base fee, ${what}`;
  return `${label?.name ?? a.meter}: ${what}, ${signed(a.quantity)} ${label?.unit ?? "units"}`;
}

export function composeInvoice(
  preview: InvoicePreview,
  head: InvoiceHead,
  adjustments: readonly AdjustmentLine[],
  labels: ReadonlyMap<string, MeterLabel>,
): Record<string, unknown> {
  const currency = preview.currency ?? adjustments.find((a) => a.currency !== null)?.currency ?? null;
  const money = (d: Dec) => (currency ? formatMoney(d, currency) : formatDecimal(d));
  const carried = sum(adjustments.map((a) => a.amount));
  const lines = adjustments.map((a) => ({
    meter: a.meter,
    kind: "adjustment",
    corrects: a.kind,
    ...(a.charge !== null ? { charge: a.charge } : {}),
    description: adjustmentDescription(a, a.meter === null ? undefined : labels.get(a.meter)),
    quantity: formatDecimal(a.quantity),
    amount: money(a.amount),
    adjusts: a.adjusts,
    adjusts_number: a.adjustsNumber,
    adjusts_period: { start: rfc3339(a.adjustsPeriod.start), end: rfc3339(a.adjustsPeriod.end) },
  }));
  return {
    id: head.id,
    number: head.number,
    status: head.status,
    ...preview,
    currency,
    lines: [...preview.lines, ...lines],
    adjustments: money(carried),
    total: money(new Dec(preview.total).plus(carried)),
    finalized_at: head.finalizedAt ? rfc3339(head.finalizedAt) : null,
  };
}
