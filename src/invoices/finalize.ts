// The finalize-invoices job. First every final invoice still open to late events is computed again (the invoice
// preview's code path) and what changed since it was frozen, net of what earlier adjustments carried, goes to the
// customer's next draft as new adjustment rows; then every draft whose period and grace time are over is frozen
// with the next number of the year. Each invoice is one transaction holding its row: a run that fails or dies
// half-way leaves nothing half-done, and the next run (here or in another process) computes the same things again.
import { calendarOf } from "../billing/subscriptions.js";
import type { Queryable } from "../db/types.js";
import type { Logger } from "../logger.js";
import { periodLabel, rfc3339 } from "./document.js";
import {
  correctionHorizon,
  differences,
  endedBy,
  invoiceNumber,
  legacyFigures,
  loadFigures,
  numberingYear,
  storeFigures,
} from "./rules.js";
import { type InvoiceDocument, type Invoices, meterLabels, statementFigures } from "./service.js";
import {
  addAdjustments,
  adjustmentLines,
  carriedFrom,
  draftsEndedBy,
  ensureDraft,
  finalsEndedAfter,
  type InvoiceRow,
  lockInvoice,
  lockNextDraft,
  saveFinal,
  takeNumber,
} from "./store.js";

const MAX_LISTED = 20;

interface FinalizeSummary {
  as_of: string;
  drafts_created: number;
  /** Final invoices computed again (those whose period may still receive late events). */
  checked: number;
  /** Adjustment rows carried to drafts in this run. */
  adjustments: number;
  finalized: number;
  /** The numbers given in this run. */
  numbers: string[];
  failed: number;
  failures: { invoice: string; customer: string; period: string; step: "correct" | "finalize"; message: string }[];
}

/** One run: corrections of final invoices first (so a draft due now is frozen with them), then finalizations. */
export async function finalizeInvoices(invoices: Invoices, log: Logger): Promise<FinalizeSummary> {
  const { db, clock, options } = invoices;
  const now = clock.now();
  const summary: FinalizeSummary = {
    as_of: rfc3339(now),
    drafts_created: await invoices.ensureDrafts(),
    checked: 0,
    adjustments: 0,
    finalized: 0,
    numbers: [],
    failed: 0,
    failures: [],
  };
  const fail = (row: InvoiceRow, step: "correct" | "finalize", err: Error) => {
    summary.failed += 1;
    log.error({ invoice: row.id, customer: row.customer, step, err: { message: err.message } }, "invoice step failed");
    if (summary.failures.length < MAX_LISTED) {
      const period = periodLabel(row.period);
      summary.failures.push({ invoice: row.id, customer: row.customer, period, step, message: err.message });
    }
  };

  for (const final of await finalsEndedAfter(db, correctionHorizon(now, options.maxAgeDays))) {
    summary.checked += 1;
    try {
      summary.adjustments += await db.transaction((tx) => correct(invoices, tx, final.id, now));
    } catch (err) {
      fail(final, "correct", err as Error);
    }
  }

  const labels = await meterLabels(db);
  for (const draft of await draftsEndedBy(db, endedBy(now, options.graceMs))) {
    try {
      const doc = await db.transaction((tx) => finalize(invoices, tx, draft.id, now, labels));
      if (doc) {
        summary.finalized += 1;
        summary.numbers.push(doc.number as string);
      }
    } catch (err) {
      fail(draft, "finalize", err as Error);
    }
  }
  return summary;
}

/** Carries what changed on a final invoice to the customer's next draft; returns the adjustment rows added. */
async function correct(invoices: Invoices, tx: Queryable, id: string, now: Date): Promise<number> {
  const final = await lockInvoice(tx, id);
  if (final?.status !== "final") return 0;
  const credited = await invoices.statement(final.customer, final.period, now, tx);
  const current = statementFigures(credited.statement, invoices.preview(credited));
  // An invoice frozen before figures had kinds is compared as it was frozen (base fees in their meter's figure).
  const frozen = loadFigures(JSON.parse(final.figures as string));
  const now_ = frozen.legacy ? legacyFigures(current) : current;
  const diffs = differences(now_, frozen.figures, await carriedFrom(tx, final.id));
  if (diffs.length === 0) return 0;
  let target = await lockNextDraft(tx, final.customer, final.period.start);
  if (!target) {
    // No later draft (the subscription ended): one for the customer's current period carries the difference.
    await ensureDraft(tx, final.customer, (await calendarOf(tx, final.customer)).periodContaining(now));
    target = await lockNextDraft(tx, final.customer, final.period.start);
  }
  if (!target) throw new Error(`no draft after ${final.period.start.toISOString()} to carry the correction to`);
  const to = target.id;
  return addAdjustments(
    tx,
    diffs.map((d) => ({
      invoice: to,
      adjusts: final.id,
      kind: d.kind,
      meter: d.meter,
      charge: d.charge,
      quantity: d.quantity,
      amount: d.amount,
      currency: final.currency,
      asOfQuantity: d.asOfQuantity,
      asOfAmount: d.asOfAmount,
      asOf: now,
    })),
  );
}

/** Freezes a draft with the next number of the year; undefined when it was final already. */
async function finalize(
  invoices: Invoices,
  tx: Queryable,
  id: string,
  now: Date,
  labels: Awaited<ReturnType<typeof meterLabels>>,
): Promise<InvoiceDocument | undefined> {
  const draft = await lockInvoice(tx, id);
  if (draft?.status !== "draft") return undefined;
  const credited = await invoices.statement(draft.customer, draft.period, now, tx);
  const st = credited.statement;
  const preview = invoices.preview(credited);
  const adjustments = await adjustmentLines(tx, [draft.id]);
  // The counter row is taken last: it stays locked until this transaction ends, so keep that short.
  const year = numberingYear(now);
  const number = invoiceNumber(year, await takeNumber(tx, year));
  const doc = invoices.compose(draft, number, now, adjustments, labels, preview);
  await saveFinal(tx, draft.id, {
    number,
    currency: doc.currency as string | null,
    total: doc.total as string,
    figures: JSON.stringify(storeFigures(statementFigures(st, preview))),
    document: JSON.stringify(doc),
    at: now,
  });
  return doc;
}
