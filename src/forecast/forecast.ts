// A customer's forecast for its current billing period (the period of its own cycle that contains now): per meter
// the quantity and amount to date and projected at the period's end. Quantities are projected by forecast/project.ts
// from the last four weeks of hourly rollups; amounts are the statement re-priced with the projected quantity in the
// segment running now, by the same pricing code as the invoice, so tiers reached later in the period count. One
// function (forecastOf) makes every forecast Tally shows: this customer's (GET /v1/customers/{id}/forecast) and every
// customer's in the dashboard's overview.
import type { BillingPeriod } from "../billing/calendar.js";
import { buildStatement, type Statement } from "../billing/statement.js";
import { calendarOf } from "../billing/subscriptions.js";
import { listMeters, type Meter } from "../catalog/meters.js";
import type { Queryable } from "../db/types.js";
import { type PricedSegment, priceInvoice } from "../pricing/invoice.js";
import { type Dec, sum, ZERO } from "../pricing/money.js";
import { readHistories } from "./history.js";
import {
  type ForecastMethod,
  type HistoryFigures,
  type Projection,
  projectedQuantity,
  projectRest,
} from "./project.js";

interface MeterForecast {
  meter: string;
  method: ForecastMethod;
  quantityToDate: Dec;
  forecastQuantity: Dec;
  amountToDate: Dec;
  forecastAmount: Dec;
}

interface Forecast {
  customer: string;
  period: { start: Date; end: Date };
  currency: string | null;
  /** The method of the usage meters (sum/count): hour_of_week once there are two weeks of history. */
  method: ForecastMethod;
  meters: MeterForecast[];
  /** Before credits, as the statement's invoice. */
  totalToDate: Dec;
  forecastTotal: Dec;
  asOf: Date;
}

interface ForecastInputs {
  /** The customer's statement of the current period (a total-only one will do). */
  statement: Statement;
  /** Each meter's period quantity to date (the summary's quantities). */
  toDate: ReadonlyMap<string, Dec>;
  meters: ReadonlyMap<string, Meter>;
  /** The customer's history figures per meter (readHistories). */
  history: ReadonlyMap<string, HistoryFigures>;
  now: Date;
}

const NO_HISTORY: HistoryFigures = { first: null, lastWeek: ZERO, weighted: { 2: ZERO, 3: ZERO, 4: ZERO } };

/** The forecast of a statement (pure): every meter it uses or prices, projected, and the invoice re-priced. */
export function forecastOf(i: ForecastInputs): Forecast {
  const { statement, now } = i;
  const period = statement.period;
  const names = new Set([...i.toDate.keys(), ...statement.segments.map((s) => s.meter)]);
  for (const l of statement.invoice.lines) if (l.meter !== null) names.add(l.meter);
  const projections = new Map<string, Projection & { quantity: Dec }>();
  for (const meter of [...names].sort()) {
    const p = projectRest(
      i.meters.get(meter)?.aggregation ?? "sum",
      i.history.get(meter) ?? NO_HISTORY,
      now,
      period.end,
    );
    projections.set(meter, { ...p, quantity: projectedQuantity(i.toDate.get(meter) ?? ZERO, p) });
  }
  const toDate = (meter: string) => i.toDate.get(meter) ?? ZERO;
  const extra = (meter: string) => {
    const p = projections.get(meter);
    return p ? p.quantity.minus(toDate(meter)) : ZERO;
  };
  // Nothing more to come (no recent usage, or max/last meters): the invoice as it stands is the forecast.
  const projected = [...projections.keys()].some((m) => !extra(m).isZero())
    ? repriced(statement, now, extra)
    : statement.invoice;
  const amountOf = (lines: { meter: string | null; amount: Dec }[], meter: string) =>
    sum(lines.filter((l) => l.meter === meter).map((l) => l.amount));
  const out: MeterForecast[] = [...projections].map(([meter, p]) => ({
    meter,
    method: p.method,
    quantityToDate: toDate(meter),
    forecastQuantity: p.quantity,
    amountToDate: amountOf(statement.invoice.lines, meter),
    forecastAmount: amountOf(projected.lines, meter),
  }));
  return {
    customer: statement.customer,
    period,
    currency: statement.currency,
    method: out.find((m) => m.method !== "current_value")?.method ?? "run_rate_7d",
    meters: out,
    totalToDate: statement.invoice.total,
    forecastTotal: projected.total,
    asOf: statement.asOf,
  };
}

export async function forecastCustomer(
  db: Queryable,
  customer: string,
  now: Date,
  /** The customer's period running at `now`, when the caller has it already. */
  known?: BillingPeriod,
): Promise<Forecast> {
  const period = known ?? (await calendarOf(db, customer)).periodContaining(now);
  // One after the other: `db` may be a transaction, which a failed branch of a Promise.all would end under the others.
  const statement = await buildStatement(db, customer, period, now);
  const meterList = await listMeters(db);
  const histories = await readHistories(db, { customer, now, periodEnd: period.end });
  return forecastOf({
    statement,
    toDate: new Map(statement.meters.map((m) => [m.meter, m.quantity])),
    meters: new Map(meterList.map((m) => [m.key, m])),
    history: histories.get(customer) ?? new Map(),
    now,
  });
}

/**
 * The statement's invoice with `extra(meter)` more, spread over the meter's segments still running or to come by the
 * share of the rest of the period each covers: the projected rest is priced where it will fall — after a trial's end
 * at the price (and from the price version) in effect then, tiers counting on in each segment — and what falls after
 * the subscription ends is not billed. Shares are of time: exact for the 7-day run rate, an even spread of the
 * hour-of-week projection's rest.
 */
function repriced(statement: Statement, now: Date, extra: (meter: string) => Dec) {
  const from = now.getTime();
  const end = statement.period.end.getTime();
  const byMeter = new Map<string, PricedSegment[]>();
  for (const s of statement.segments) {
    if (s.end.getTime() > from) byMeter.set(s.meter, [...(byMeter.get(s.meter) ?? []), s]);
  }
  const added = new Map<PricedSegment, Dec>();
  for (const [meter, running] of byMeter) {
    const total = extra(meter);
    let left = total;
    running.sort((a, b) => a.start.getTime() - b.start.getTime());
    running.forEach((s, i) => {
      const covered = Math.min(s.end.getTime(), end) - Math.max(s.start.getTime(), from);
      // The period's last segment takes what rounding left (none is left when the subscription ends before it).
      const part =
        i === running.length - 1 && s.end.getTime() === end
          ? left
          : total
              .times(covered)
              .dividedBy(end - from)
              .toDecimalPlaces(9);
      added.set(s, part);
      left = left.minus(part);
    });
  }
  const segments = statement.segments.map((s) => {
    const more = added.get(s);
    return more && !more.isZero() ? { ...s, quantity: s.quantity.plus(more) } : s;
  });
  // Only amounts are read of it: no line descriptions (the overview re-prices a thousand statements).
  return priceInvoice(statement.invoice.currency, segments, statement.fees, undefined, { totalOnly: true });
}
