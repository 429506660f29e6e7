// Draft rows as billing calendars make them (SQL only): the missing drafts of groups of customers that share their
// periods, the drafts whose bounds are none of their customer's periods, and moving or dropping such a draft.
import type { Queryable } from "../db/types.js";
import type { Period } from "../pricing/segments.js";
import { newInvoiceId } from "./store.js";

/** Customers whose drafts fall in the same periods (most share UTC calendar months). */
export interface PeriodGroup {
  periods: readonly Period[];
  customers: readonly string[];
}

/** The groups as arrays: (group, start, end) per period and (customer, group) per customer. */
function groupArrays(groups: readonly PeriodGroup[]) {
  const periods = groups.flatMap((g, i) => g.periods.map((p) => [i, p.start, p.end] as const));
  const customers = groups.flatMap((g, i) => g.customers.map((c) => [c, i] as const));
  return [
    periods.map((p) => p[0]),
    periods.map((p) => p[1]),
    periods.map((p) => p[2]),
    customers.map((c) => c[0]),
    customers.map((c) => c[1]),
  ];
}

/**
 * Creates the missing drafts: each group's periods, for every customer of the group whose subscription overlaps
 * them. Returns how many were created.
 */
export async function ensureDrafts(q: Queryable, groups: readonly PeriodGroup[]): Promise<number> {
  if (groups.every((g) => g.periods.length === 0 || g.customers.length === 0)) return 0;
  const { rows } = await q.query<{ customer_id: string; period_start: Date; period_end: Date }>(
    `SELECT DISTINCT c.customer_id, p.s AS period_start, p.e AS period_end
     FROM unnest($1::int[], $2::timestamptz[], $3::timestamptz[]) AS p(g, s, e)
     JOIN unnest($4::text[], $5::int[]) AS c(customer_id, g) ON c.g = p.g
     JOIN subscriptions s ON s.customer_id = c.customer_id AND s.start_at < p.e AND (s.end_at IS NULL OR s.end_at > p.s)
     WHERE NOT EXISTS (SELECT 1 FROM invoices i WHERE i.customer_id = c.customer_id AND i.period_start = p.s)`,
    groupArrays(groups),
  );
  if (rows.length === 0) return 0;
  const created = await q.query(
    `INSERT INTO invoices (id, customer_id, period_start, period_end)
     SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[])
     ON CONFLICT (customer_id, period_start) DO NOTHING`,
    [
      rows.map(() => newInvoiceId()),
      rows.map((r) => r.customer_id),
      rows.map((r) => r.period_start),
      rows.map((r) => r.period_end),
    ],
  );
  return created.rowCount;
}

/** A draft whose bounds are none of its customer's periods (its customer's billing cycle changed). */
export interface StaleDraft {
  id: string;
  customer: string;
  period: Period;
  /** Adjustments were carried to it: it must be kept (they never move). */
  adjusted: boolean;
}

/** The drafts of the groups' customers that reach into the groups' periods with other bounds than all of them. */
export async function staleDrafts(q: Queryable, groups: readonly PeriodGroup[]): Promise<StaleDraft[]> {
  const { rows } = await q.query<{
    id: string;
    customer_id: string;
    period_start: Date;
    period_end: Date;
    adjusted: boolean;
  }>(
    `WITH p AS (SELECT * FROM unnest($1::int[], $2::timestamptz[], $3::timestamptz[]) AS p(g, s, e)),
          c AS (SELECT * FROM unnest($4::text[], $5::int[]) AS c(customer_id, g)),
          f AS (SELECT g, min(s) AS s FROM p GROUP BY g)
     SELECT i.id, i.customer_id, i.period_start, i.period_end,
            EXISTS (SELECT 1 FROM invoice_adjustments a WHERE a.invoice_id = i.id) AS adjusted
     FROM c JOIN f ON f.g = c.g
     JOIN invoices i ON i.customer_id = c.customer_id AND i.status = 'draft' AND i.period_end > f.s
     LEFT JOIN p ON p.g = c.g AND p.s = i.period_start AND p.e = i.period_end
     WHERE p.g IS NULL
     ORDER BY i.customer_id, i.period_start`,
    groupArrays(groups),
  );
  return rows.map((r) => ({
    id: r.id,
    customer: r.customer_id,
    period: { start: r.period_start, end: r.period_end },
    adjusted: r.adjusted,
  }));
}

/** Another invoice of the customer has this period's start: nothing changed (a concurrent reconciliation won). */
const lostRace = (err: unknown): boolean => ["23505", "23503"].includes((err as { code?: string } | null)?.code ?? "");

/** Gives a draft other bounds; false when it is final by now or another invoice has that start. */
export async function moveDraft(q: Queryable, id: string, period: Period): Promise<boolean> {
  try {
    const { rowCount } = await q.query(
      `UPDATE invoices SET period_start = $2, period_end = $3
       WHERE id = $1 AND status = 'draft'
         AND NOT EXISTS (SELECT 1 FROM invoices o WHERE o.customer_id = invoices.customer_id AND o.period_start = $2
                                                       AND o.id <> $1)`,
      [id, period.start, period.end],
    );
    return rowCount > 0;
  } catch (err) {
    if (lostRace(err)) return false;
    throw err;
  }
}

/** Deletes a draft no adjustment was carried to; false when it has one (or is final) by now. */
export async function dropDraft(q: Queryable, id: string): Promise<boolean> {
  try {
    const { rowCount } = await q.query(
      `DELETE FROM invoices WHERE id = $1 AND status = 'draft'
         AND NOT EXISTS (SELECT 1 FROM invoice_adjustments a WHERE a.invoice_id = $1)`,
      [id],
    );
    return rowCount > 0;
  } catch (err) {
    if (lostRace(err)) return false;
    throw err;
  }
}

/**
 * Final invoices of these customers whose period ends after `after`, by customer: what their drafts' periods must
 * not overlap.
 */
export async function finalPeriodsOf(
  q: Queryable,
  customers: readonly string[],
  after: Date,
): Promise<Map<string, Period[]>> {
  const out = new Map<string, Period[]>();
  if (customers.length === 0) return out;
  const { rows } = await q.query<{ customer_id: string; period_start: Date; period_end: Date }>(
    `SELECT customer_id, period_start, period_end FROM invoices
     WHERE status = 'final' AND period_end > $1 AND customer_id = ANY($2::text[]) ORDER BY period_start`,
    [after, customers],
  );
  for (const r of rows) {
    out.set(r.customer_id, [...(out.get(r.customer_id) ?? []), { start: r.period_start, end: r.period_end }]);
  }
  return out;
}
