// The alerts list: limit alerts (stored with the customer's billing period they belong to) and credit alerts (about a
// balance, not a period: they belong to the customer's period they happened in), newest first.
import type { BillingCalendar, BillingPeriod } from "../billing/calendar.js";
import { calendarsOf } from "../billing/subscriptions.js";
import type { Queryable } from "../db/types.js";
import { instantToWall, resolveZone } from "../periods/zones.js";

interface AlertRecord {
  customer: string;
  /** null: a credit alert (about the customer's balance, not one meter). */
  meter: string | null;
  level: string;
  threshold: string;
  unit: string;
  value: string;
  period: BillingPeriod;
  /** YYYY-MM: the month the period starts in, read in the time zone of the customer's cycle (a UTC month for UTC). */
  month: string;
  triggeredAt: Date;
}

/** Which alerts by period (each one's period is its customer's). */
export type AlertPeriodFilter =
  /** One period of the filter's customer (from its calendar). */
  | { period: BillingPeriod; calendar: BillingCalendar }
  /** Of any customer: alerts whose period starts in [from, to) — a UTC month. */
  | { startsFrom: Date; startsBefore: Date }
  /** Of any customer: alerts whose period contains `at`. */
  | { at: Date };

const LIMIT = 1000;

interface Row {
  customer_id: string;
  meter: string | null;
  level: string;
  threshold: string;
  unit: string;
  value: string;
  period_start: Date | null;
  period_end: Date | null;
  triggered_at: Date;
  id: string;
}

/** Limit alerts of the filter, newest 1,000 (rows from before v1.2 without an end: a UTC month from the start). */
async function limitAlerts(db: Queryable, customer: string | null, f: AlertPeriodFilter | null): Promise<Row[]> {
  const range =
    f === null || "at" in f ? null : "period" in f ? f.period : { start: f.startsFrom, end: f.startsBefore };
  const at = f !== null && "at" in f ? f.at : null;
  const { rows } = await db.query<Row>(
    `SELECT customer_id, meter, level, threshold::text AS threshold, unit, value::text AS value, period_start,
            COALESCE(period_end, (period_start AT TIME ZONE 'UTC' + interval '1 month') AT TIME ZONE 'UTC') AS period_end,
            triggered_at, id::text AS id
     FROM alerts
     WHERE ($1::text IS NULL OR customer_id = $1)
       AND ($2::timestamptz IS NULL OR (period_start >= $2 AND period_start < $3))
       AND ($4::timestamptz IS NULL OR (period_start <= $4
            AND COALESCE(period_end, (period_start AT TIME ZONE 'UTC' + interval '1 month') AT TIME ZONE 'UTC') > $4))
     ORDER BY triggered_at DESC, id DESC LIMIT ${LIMIT}`,
    [customer, range?.start ?? null, range?.end ?? null, at],
  );
  return rows;
}

/**
 * Credit alerts that may be of the filter: exactly those of a customer's period, else every one that happened from
 * the month's start on (which of them belong to a period starting in the month takes the calendars).
 */
async function creditAlerts(db: Queryable, customer: string | null, f: AlertPeriodFilter | null): Promise<Row[]> {
  const exact = f === null || "period" in f;
  const from = f === null || "at" in f ? null : "period" in f ? f.period.start : f.startsFrom;
  const to = f !== null && "period" in f ? f.period.end : null;
  const { rows } = await db.query<Row>(
    `SELECT customer_id, NULL AS meter, level, threshold::text AS threshold, 'amount' AS unit, balance::text AS value,
            NULL::timestamptz AS period_start, NULL::timestamptz AS period_end, triggered_at, id::text AS id
     FROM credit_alerts
     WHERE ($1::text IS NULL OR customer_id = $1) AND ($2::timestamptz IS NULL OR triggered_at >= $2)
       AND ($3::timestamptz IS NULL OR triggered_at < $3)
     ORDER BY triggered_at DESC, id DESC ${exact ? `LIMIT ${LIMIT}` : ""}`,
    [customer, from, to],
  );
  return rows;
}

/** "YYYY-MM" of the period's start in the time zone of the cycle it belongs to. */
function periodLabel(calendar: BillingCalendar, period: BillingPeriod): string {
  const zone = calendar.cycleAt(period.start).timeZone;
  const t = period.start.getTime();
  const wall = zone === "UTC" ? t : instantToWall(resolveZone(zone), t);
  return new Date(wall).toISOString().slice(0, 7);
}

function inFilter(p: BillingPeriod, f: AlertPeriodFilter | null): boolean {
  if (f === null || "period" in f) return true;
  if ("at" in f) return p.start <= f.at && f.at < p.end;
  return p.start >= f.startsFrom && p.start < f.startsBefore;
}

/** The newest alerts (at most 1,000), of one customer and/or by period when given, each with its period. */
export async function listAlerts(
  db: Queryable,
  filter: { customer: string | null; period: AlertPeriodFilter | null },
): Promise<AlertRecord[]> {
  const { customer, period: f } = filter;
  const rows = [...(await limitAlerts(db, customer, f)), ...(await creditAlerts(db, customer, f))];
  if (rows.length === 0) return [];
  const known = f !== null && "calendar" in f && customer !== null ? new Map([[customer, f.calendar]]) : undefined;
  const calendars = known ?? (await calendarsOf(db, [...new Set(rows.map((r) => r.customer_id))]));
  const out: (AlertRecord & { id: string })[] = [];
  for (const r of rows) {
    const calendar = calendars.get(r.customer_id) as BillingCalendar;
    const period =
      r.period_start && r.period_end
        ? { start: r.period_start, end: r.period_end }
        : calendar.periodContaining(r.triggered_at);
    if (r.meter === null && !inFilter(period, f)) continue;
    out.push({
      customer: r.customer_id,
      meter: r.meter,
      level: r.level,
      threshold: r.threshold,
      unit: r.unit,
      value: r.value,
      period,
      month: periodLabel(calendar, period),
      triggeredAt: r.triggered_at,
      id: r.id,
    });
  }
  out.sort((a, b) => b.triggeredAt.getTime() - a.triggeredAt.getTime() || Number(b.id) - Number(a.id));
  return out.slice(0, LIMIT).map(({ id: _, ...a }) => a);
}
