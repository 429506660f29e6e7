// An invoice as the API serves it (pure): the rendered invoice preview of its period, plus its identity (id,
// number, status, finalized_at) and the adjustment lines carried to it, which count in its total.
import { Dec, formatDecimal, formatMoney, sum } from "../pricing/money.js";
import type { AdjustmentLine, InvoiceStatus } from "./store.js";

/** The invoice preview as the API renders it (its fields vary with what pricing puts on an invoice). */
export type RenderedInvoice = Record<string, unknown> & { currency: string | null; lines: unknown[]; total: string };

export interface InvoiceHead {
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

const month = (d: Date): string => d.toISOString().slice(0, 7);

const signed = (d: Dec): string => (d.isPositive() && !d.isZero() ? `+${formatDecimal(d)}` : formatDecimal(d));

export function adjustmentDescription(a: AdjustmentLine, label: MeterLabel | undefined): string {
  const what = `correction of invoice ${a.adjustsNumber} (${month(a.adjustsPeriod.start)})`;
  if (a.meter === null) return `Credits and other changes: ${what}`;
  return `${label?.name ?? a.meter}: ${what}, ${signed(a.quantity)} ${label?.unit ?? "units"}`;
}

export function composeInvoice(
  rendered: RenderedInvoice,
  head: InvoiceHead,
  adjustments: readonly AdjustmentLine[],
  labels: ReadonlyMap<string, MeterLabel>,
): Record<string, unknown> {
  const currency = rendered.currency ?? adjustments.find((a) => a.currency !== null)?.currency ?? null;
  const money = (d: Dec) => (currency ? formatMoney(d, currency) : formatDecimal(d));
  const carried = sum(adjustments.map((a) => a.amount));
  const lines = adjustments.map((a) => ({
    meter: a.meter,
    kind: "adjustment",
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
    ...rendered,
    currency,
    lines: [...rendered.lines, ...lines],
    adjustments: money(carried),
    total: money(new Dec(rendered.total).plus(carried)),
    finalized_at: head.finalizedAt ? rfc3339(head.finalizedAt) : null,
  };
}
