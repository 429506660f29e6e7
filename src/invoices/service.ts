// Invoices as the API reads them: a final invoice is its stored document, served as it was frozen; a draft is
// computed on every read by the same code path as the invoice preview (billing/statement), with the adjustments
// carried to it. Drafts are rows created lazily, for every subscribed customer, for the periods of its own billing
// calendar from the first one still open to late events up to the current one (on reads and by the
// finalize-invoices job; see drafts.ts).
import type { Statement } from "../billing/statement.js";
import { listMeters } from "../catalog/meters.js";
import type { Clock } from "../clock.js";
import { type CreditedStatement, creditedStatement } from "../credits/invoice.js";
import type { CreditLedgers } from "../credits/ledger.js";
import type { Db, Queryable } from "../db/types.js";
import { Dec } from "../pricing/money.js";
import type { Period } from "../pricing/segments.js";
import { composeInvoice, type InvoicePreview, invoicePreview, type MeterLabel } from "./document.js";
import { ensureCustomerDrafts } from "./drafts.js";
import { type Figure, figuresOf } from "./rules.js";
import {
  type AdjustmentLine,
  adjustmentLines,
  getInvoice,
  type InvoiceFilter,
  type InvoiceRow,
  invoiceOf,
  listInvoices,
} from "./store.js";

interface InvoiceOptions {
  /** TALLY_INVOICE_GRACE in milliseconds. */
  graceMs: number;
  /** TALLY_EVENT_MAX_AGE_DAYS: how far back late events are accepted. */
  maxAgeDays: number;
  /** Prepaid credits: an invoice carries the credits its period used, as the preview does. */
  credits: CreditLedgers;
}

export type InvoiceDocument = Record<string, unknown> & { id: string; customer: string };

/** An invoice's own figures from its statement: what a final invoice is compared with later. */
export function statementFigures(st: Statement, preview: InvoicePreview): Figure[] {
  return figuresOf(
    st.meters.filter((m) => typeof m.meter === "string").map((m) => ({ meter: m.meter, quantity: m.quantity })),
    st.invoice.lines,
    new Dec(preview.total),
  );
}

export async function meterLabels(q: Queryable): Promise<Map<string, MeterLabel>> {
  return new Map((await listMeters(q)).map((m) => [m.key, { name: m.name, unit: m.unit }]));
}

export class Invoices {
  constructor(
    readonly db: Db,
    readonly clock: Clock,
    readonly options: InvoiceOptions,
  ) {}

  /** The statement of a customer's period with its credits (within `tx`, when given). */
  statement(customer: string, period: Period, now: Date, tx?: Queryable): Promise<CreditedStatement> {
    return creditedStatement(this.options.credits, customer, period, now, tx);
  }

  /** The invoice preview of a statement with its credits: what a draft shows and what finalization freezes. */
  preview(c: CreditedStatement): InvoicePreview {
    return invoicePreview(c.statement, c.credits);
  }

  /**
   * Creates the missing drafts of each customer's own periods (all customers, or one), after giving drafts of a
   * changed billing cycle their new bounds; returns how many were created.
   */
  async ensureDrafts(customer?: string, q: Queryable = this.db): Promise<number> {
    return ensureCustomerDrafts(q, this.clock.now(), this.options.maxAgeDays, customer);
  }

  async list(filter: InvoiceFilter): Promise<InvoiceDocument[]> {
    await this.ensureDrafts(filter.customer);
    return this.documents(await listInvoices(this.db, filter));
  }

  /** The invoice, unless it belongs to another customer than `onlyOf` (a key bound to a customer). */
  async get(id: string, onlyOf?: string | null): Promise<InvoiceDocument | undefined> {
    let row = await getInvoice(this.db, id);
    if (!row || (onlyOf && row.customer !== onlyOf)) return undefined;
    if (row.status === "draft") {
      // A draft follows its customer's calendar: after a cycle change its bounds move (or it goes).
      await this.ensureDrafts(row.customer);
      row = await getInvoice(this.db, id);
      if (!row) return undefined;
    }
    return (await this.documents([row]))[0];
  }

  /** The customer's final invoice of a period, as frozen; undefined while the period has none. */
  async finalOf(customer: string, period: Period): Promise<InvoiceDocument | undefined> {
    const row = await invoiceOf(this.db, customer, period.start);
    return row?.status === "final" ? (await this.documents([row]))[0] : undefined;
  }

  async documents(rows: readonly InvoiceRow[]): Promise<InvoiceDocument[]> {
    const drafts = rows.filter((r) => r.status === "draft");
    const adjustments = await adjustmentLines(
      this.db,
      drafts.map((r) => r.id),
    );
    const labels = drafts.length > 0 ? await meterLabels(this.db) : new Map<string, MeterLabel>();
    const now = this.clock.now();
    const out: InvoiceDocument[] = [];
    for (const row of rows) {
      if (row.status === "final") {
        out.push(JSON.parse(row.document as string) as InvoiceDocument);
        continue;
      }
      const credited = await this.statement(row.customer, row.period, now);
      const mine = adjustments.filter((a) => a.invoice === row.id);
      out.push(this.compose(row, null, null, mine, labels, this.preview(credited)));
    }
    return out;
  }

  compose(
    row: InvoiceRow,
    number: string | null,
    finalizedAt: Date | null,
    adjustments: readonly AdjustmentLine[],
    labels: ReadonlyMap<string, MeterLabel>,
    preview: InvoicePreview,
  ): InvoiceDocument {
    const status = number === null ? "draft" : "final";
    return composeInvoice(preview, { id: row.id, number, status, finalizedAt }, adjustments, labels) as InvoiceDocument;
  }
}
