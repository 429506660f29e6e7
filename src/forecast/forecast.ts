// A customer's forecast for the current billing period: per meter the quantity and amount to date and projected at
// the period's end. Quantities are projected by forecast/project.ts from the last four weeks of hourly rollups;
// amounts are the statement re-priced with the projected quantity in the segment running now, by the same pricing
// code as the invoice, so tiers reached later in the month count.

import { buildStatement, type Statement } from "../billing/statement.js";
import { listMeters } from "../catalog/meters.js";
import { jsonRows } from "../db/jsonRows.js";
import type { Queryable } from "../db/types.js";
import { type PricedSegment, priceInvoice } from "../pricing/invoice.js";
import { type Dec, dec, sum, ZERO } from "../pricing/money.js";
import { addBuckets, alignDown, periodOf } from "../rollups/buckets.js";
import { prepareSeries } from "../rollups/series.js";
import { type ForecastMethod, HISTORY_HOURS, projectQuantity } from "./project.js";

export interface MeterForecast {
  meter: string;
  method: ForecastMethod;
  quantityToDate: Dec;
  forecastQuantity: Dec;
  amountToDate: Dec;
  forecastAmount: Dec;
}

export interface Forecast {
  customer: string;
  period: { start: Date; end: Date };
  currency: string | null;
  /** The method of the usage meters (sum/count): hour_of_week once there are two weeks of history. */
  method: ForecastMethod;
  meters: MeterForecast[];
  totalToDate: Dec;
  forecastTotal: Dec;
  asOf: Date;
}

export async function forecastCustomer(db: Queryable, customer: string, now: Date): Promise<Forecast> {
  const period = periodOf(now);
  const statement = await buildStatement(db, customer, period, now);
  const meters = new Map((await listMeters(db)).map((m) => [m.key, m]));
  const nowHour = alignDown(now, "hour");
  // The history reduced in the database to what projection needs (the hour and its sum or count), as one JSON text.
  const history = await prepareSeries(db, {
    granularity: "hour",
    from: addBuckets(nowHour, "hour", -HISTORY_HOURS),
    to: nowHour,
    customer,
  });
  const rows = await jsonRows<[number, string, string, string]>(db, {
    cells: "extract(epoch FROM s.bucket) * 1000, s.meter, s.value_sum, s.event_count",
    source: `(${history.text}) AS s`,
    params: history.params,
  });
  const hourly = new Map<string, Map<number, Dec>>();
  for (const [at, meter, valueSum, eventCount] of rows) {
    const m = meters.get(meter);
    if (!m) continue;
    const byHour = hourly.get(meter) ?? new Map<number, Dec>();
    byHour.set(at, dec(m.aggregation === "count" ? eventCount : valueSum));
    hourly.set(meter, byHour);
  }
  const projections = new Map(
    statement.meters.map((s) => {
      const m = meters.get(s.meter);
      const p = projectQuantity({
        aggregation: m?.aggregation ?? "sum",
        toDate: s.quantity,
        now,
        periodEnd: period.end,
        hourly: hourly.get(s.meter) ?? new Map(),
      });
      return [s.meter, p] as const;
    }),
  );
  const projected = repriced(statement, now, (meter) => {
    const p = projections.get(meter);
    const toDate = statement.meters.find((s) => s.meter === meter)?.quantity ?? ZERO;
    return p ? p.quantity.minus(toDate) : ZERO;
  });
  const amountOf = (lines: { meter: string; amount: Dec }[], meter: string) =>
    sum(lines.filter((l) => l.meter === meter).map((l) => l.amount));
  const out: MeterForecast[] = statement.meters.map((s) => {
    const p = projections.get(s.meter);
    return {
      meter: s.meter,
      method: p?.method ?? "current_value",
      quantityToDate: s.quantity,
      forecastQuantity: p?.quantity ?? s.quantity,
      amountToDate: s.amount,
      forecastAmount: amountOf(projected.lines, s.meter),
    };
  });
  const usage = out.find((m) => m.method !== "current_value");
  return {
    customer,
    period,
    currency: statement.currency,
    method: usage?.method ?? "run_rate_7d",
    meters: out,
    totalToDate: statement.invoice.total,
    forecastTotal: projected.total,
    asOf: statement.asOf,
  };
}

/**
 * The statement's invoice with `extra(meter)` more in the segment of that meter running at `now` (the last one
 * started by then): the projected rest of the period is priced where it will fall, tiers counting on from there.
 */
function repriced(statement: Statement, now: Date, extra: (meter: string) => Dec) {
  const current = new Map<string, PricedSegment>();
  for (const s of statement.segments) {
    if (s.start > now) continue;
    const known = current.get(s.meter);
    if (!known || s.start > known.start) current.set(s.meter, s);
  }
  const segments = statement.segments.map((s) =>
    current.get(s.meter) === s ? { ...s, quantity: s.quantity.plus(extra(s.meter)) } : s,
  );
  return priceInvoice(statement.invoice.currency, segments, statement.baseFees);
}
