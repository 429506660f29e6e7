// Forecast alerts: a limit with `forecast: true` records a `forecast` alert (once per threshold and period) and
// queues a `limit.forecast` webhook when the forecast to the end of the customer's billing period reaches its soft
// or hard threshold — days before the real crossing. Evaluated by the evaluate-limits job.
import type { BillingPeriod } from "../billing/calendar.js";
import type { Db } from "../db/types.js";
import { forecastCustomer } from "../forecast/forecast.js";
import { enqueueEvent } from "../webhooks/outbox.js";
import { recordAlert } from "./states.js";
import type { StoredLimit } from "./store.js";

/** Records the forecast alerts of one customer; returns how many were new and how many webhooks were queued. */
export async function evaluateForecastAlerts(
  db: Db,
  i: { customer: string; limits: StoredLimit[]; period: BillingPeriod; now: Date },
  eventId: (alertId: string) => string,
): Promise<{ alerts: number; webhooks: number }> {
  const { customer, period, now } = i;
  const watched = i.limits.filter((l) => l.forecast);
  if (watched.length === 0) return { alerts: 0, webhooks: 0 };
  const forecast = await forecastCustomer(db, customer, now, period);
  const out = { alerts: 0, webhooks: 0 };
  await db.transaction(async (tx) => {
    for (const limit of watched) {
      const m = forecast.meters.find((x) => x.meter === limit.meter);
      if (!m) continue;
      const value = limit.unit === "amount" ? m.forecastAmount : m.forecastQuantity;
      for (const [kind, threshold] of [
        ["soft", limit.soft],
        ["hard", limit.hard],
      ] as const) {
        if (!threshold || value.lt(threshold)) continue;
        const alert = await recordAlert(tx, {
          customer,
          meter: limit.meter,
          period,
          level: "forecast",
          threshold,
          unit: limit.unit,
          value,
          at: now,
        });
        if (!alert) continue;
        out.alerts += 1;
        const id = eventId(alert.id);
        const body = JSON.stringify({
          id,
          type: "limit.forecast",
          created_at: now.toISOString(),
          data: {
            customer,
            meter: limit.meter,
            level: "forecast",
            threshold_kind: kind,
            threshold: threshold.toFixed(),
            unit: limit.unit,
            forecast: value.toFixed(),
            method: m.method,
            currency: limit.unit === "amount" ? forecast.currency : undefined,
            period: { start: period.start.toISOString(), end: period.end.toISOString() },
            period_start: period.start.toISOString(),
            period_end: period.end.toISOString(),
            triggered_at: alert.triggeredAt.toISOString(),
          },
        });
        out.webhooks += await enqueueEvent(tx, id, body, now);
      }
    }
  });
  return out;
}
