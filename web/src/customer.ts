// The customer view — the operator's drill-down and the embeddable page alike: per meter quantity, amount, limits
// and tier progress; usage charts; credits; the draft invoice with credits and adjustments; finalized invoices;
// the forecast; a CSV download; and how fresh it all is (as_of). Amounts are shown exactly as the API wrote them.
import { type Api, optional } from "./api.js";
import { usageChart } from "./chart.js";
import { fill, h, message, panel, replace, table, when } from "./dom.js";
import { dayLabel, methodLabel, money, periodBounds, periodLabel } from "./format.js";
import { stateBadge } from "./states.js";
import type {
  Credits,
  CustomerInfo,
  Forecast,
  Invoice,
  InvoiceList,
  Overview,
  Summary,
  SummaryMeter,
  ViewMeter,
} from "./types.js";

interface Slots {
  state: HTMLElement;
  forecastTotal: HTMLElement;
  forecastMethod: HTMLElement;
  forecast: HTMLElement;
  credits: HTMLElement;
  draft: HTMLElement;
  final: HTMLElement;
}

export async function customerView(api: Api, root: HTMLElement, id: string): Promise<void> {
  const view = root.dataset.view;
  const q = encodeURIComponent(id);
  // The meters render as soon as these two answers are in (the meaningful paint); the rest is asked for after, so
  // it does not queue in front of them (the embedded database answers one query at a time).
  const [info, summary] = await Promise.all([
    api.get<CustomerInfo>(`/v1/dashboard/customers/${q}`),
    api.get<Summary>(`/v1/customers/${q}/summary`),
  ]);
  if (root.dataset.view !== view) return; // another view took the page meanwhile
  const slots: Slots = {
    state: h("span", { "data-testid": "customer-state" }),
    forecastTotal: h("strong", { "data-testid": "forecast-total" }, "…"),
    forecastMethod: h("span", { class: "muted", "data-testid": "forecast-method" }),
    forecast: panel("Forecast", "forecast", message("Loading…")),
    credits: panel("Prepaid credits", "credits", message("Loading…")),
    draft: panel("Draft invoice", "draft", message("Loading…")),
    final: panel("Finalized invoices", "final", message("Loading…")),
  };
  const csv = h(
    "button",
    { type: "button", class: "secondary", onclick: () => void download(api, id, info) },
    "Download usage (CSV)",
  );
  replace(
    root,
    customerHead(info, summary),
    summaryCards(summary, slots),
    panel("Meters", "meters", metersTable(summary, info.meters)),
    panel(
      "Usage",
      "usage",
      info.meters.length
        ? info.meters.map((m) =>
            h("div", { class: "meter-chart" }, h("h3", {}, m.name), usageChart(api, id, m, info.period, summary.as_of)),
          )
        : message("No meters yet."),
    ),
    h("p", {}, csv),
    ...[slots.forecast, slots.credits, slots.draft, slots.final],
  );
  performance.mark("tally:meaningful");
  root.dataset.ready = "true";
  await loadRest(api, id, slots, info.period.time_zone);
  // Only if no other view has replaced this one meanwhile.
  if (root.dataset.view === view) root.dataset.complete = "true";
}

function customerHead(info: CustomerInfo, summary: Summary): HTMLElement {
  return h(
    "div",
    { class: "customer-head" },
    h("h1", {}, info.customer.name ?? info.customer.id),
    h(
      "p",
      { class: "muted" },
      info.customer.name ? `${info.customer.id} · ` : "",
      info.plan ? `plan ${info.plan.key} · ` : "no plan · ",
      "period ",
      // The customer's own billing period, as its cycle's calendar reads it; the exact instants on hover.
      h(
        "span",
        { "data-testid": "period", title: periodBounds(info.period) },
        periodLabel(info.period, info.period.time_zone),
      ),
    ),
    planTimeline(info),
    h("p", { class: "fresh", "data-testid": "as-of" }, `Data as of ${when(summary.as_of)}`),
  );
}

/** The plans of the period and after: "starter from Nov 1 → pro from Nov 11 → starter from Dec 1 (scheduled)". */
function planTimeline(info: CustomerInfo): HTMLElement | null {
  if (info.timeline.length < 2 && !info.timeline.some((x) => x.scheduled || x.trial_end || x.end)) return null;
  const zone = info.period.time_zone;
  const steps = info.timeline.map((x, i) =>
    h(
      "span",
      { "data-testid": "plan-step", class: x.scheduled ? "scheduled" : null },
      i > 0 ? " → " : "",
      `${x.plan} from ${dayLabel(x.start, zone)}`,
      x.trial_end ? ` (trial until ${dayLabel(x.trial_end, zone)})` : "",
      x.scheduled ? " (scheduled)" : "",
      x.end && !info.timeline[i + 1] ? `, ends ${dayLabel(x.end, zone)}` : "",
    ),
  );
  return h("p", { class: "muted", "data-testid": "plan-timeline" }, "Plans: ", ...steps);
}

/** Spend (after credits, and what the credits took off), state, and the forecast (before credits). */
function summaryCards(summary: Summary, slots: Slots): HTMLElement {
  const currency = summary.currency;
  const credited =
    summary.credits !== undefined
      ? h(
          "span",
          { "data-testid": "spend-credits" },
          `after ${money(summary.credits, currency)} of credits · ${money(summary.subtotal ?? summary.total, currency)} before credits`,
        )
      : null;
  return h(
    "div",
    { class: "cards" },
    h(
      "div",
      { class: "card" },
      h("span", { class: "label" }, "Spend this period"),
      h("strong", { "data-testid": "summary-total" }, money(summary.total, currency)),
      credited,
    ),
    h("div", { class: "card" }, h("span", { class: "label" }, "State"), slots.state),
    h(
      "div",
      { class: "card" },
      h("span", { class: "label" }, "Forecast for the period, before credits"),
      slots.forecastTotal,
      slots.forecastMethod,
    ),
  );
}

/** What the view shows below the charts, asked for once the meters are on screen. */
async function loadRest(api: Api, id: string, slots: Slots, zone: string): Promise<void> {
  const q = encodeURIComponent(id);
  const stateP = api.get<Overview>("/v1/dashboard/customers", { customer: id });
  const forecastP = optional(api.get<Forecast>(`/v1/customers/${q}/forecast`));
  const creditsP = optional(api.get<Credits>(`/v1/customers/${q}/credits`));
  const draftP = api.get<InvoiceList>("/v1/invoices", { customer: id, status: "draft" });
  const finalP = api.get<InvoiceList>("/v1/invoices", { customer: id, status: "final" });
  const unavailable = (el: HTMLElement, what: string) => (e: Error) =>
    fill(el, message(`${what} unavailable: ${e.message}`, "alert"));
  await Promise.all([
    stateP.then(
      (o) => replace(slots.state, stateBadge(o.customers[0]?.state ?? "ok")),
      () => replace(slots.state, "unknown"),
    ),
    forecastP.then(
      (f) => {
        slots.forecastTotal.textContent = f ? money(f.forecast_total, f.currency) : "—";
        slots.forecastMethod.textContent = f ? `projected by the ${methodLabel(f.method)}` : "";
        fill(slots.forecast, f ? forecastTable(f, zone) : message("No forecast."));
      },
      unavailable(slots.forecast, "Forecast"),
    ),
    creditsP.then(
      (c) => fill(slots.credits, c?.grants.length ? creditsBlock(c) : message("No prepaid credits.")),
      unavailable(slots.credits, "Credits"),
    ),
    draftP.then(
      (r) => fill(slots.draft, r.data[0] ? invoiceBlock(r.data[0], zone) : message("No draft invoice.")),
      unavailable(slots.draft, "Invoices"),
    ),
    finalP.then(
      (r) =>
        fill(
          slots.final,
          r.data.length ? r.data.map((inv) => finalInvoice(inv, zone)) : message("No finalized invoices yet."),
        ),
      unavailable(slots.final, "Invoices"),
    ),
  ]);
}

function finalInvoice(inv: Invoice, zone: string): HTMLElement {
  return h(
    "details",
    {},
    h("summary", {}, `${inv.number ?? inv.id} · ${periodLabel(inv.period, zone)} · ${money(inv.total, inv.currency)}`),
    invoiceBlock(inv, zone),
  );
}

function limitBar(m: SummaryMeter, unitLabel: string, currency: string | null): HTMLElement | null {
  const l = m.limit;
  if (!l) return null;
  const value = l.unit === "amount" ? m.amount : m.quantity;
  const cap = l.hard ?? l.soft;
  if (!cap) return null;
  const show = (v: string) => (l.unit === "amount" ? money(v, currency) : `${v} ${unitLabel}`);
  const text = [l.soft ? `soft ${show(l.soft)}` : "", l.hard ? `hard ${show(l.hard)}` : ""].filter(Boolean).join(", ");
  // The bar's length is only a picture; the figures next to it are the API's strings.
  return h(
    "div",
    { class: `limit ${l.state}` },
    h("progress", {
      max: cap,
      value: Math.min(Number(value), Number(cap)),
      "aria-label": `${m.meter}: ${show(value)} of ${text}`,
    }),
    h("span", {}, `${show(value)} of ${text} · `, stateBadge(l.state)),
  );
}

function tierLine(m: SummaryMeter, unitLabel: string): HTMLElement | null {
  const t = m.tier;
  if (!t) return null;
  if (t.up_to === null || t.units_to_next_tier === null)
    return h("div", { class: "tier" }, `Tier ${t.index} (last) at ${t.unit_price} per ${unitLabel}`);
  return h(
    "div",
    { class: "tier" },
    h("progress", {
      max: t.up_to,
      value: Math.min(Number(m.quantity), Number(t.up_to)),
      "aria-label": `tier ${t.index} progress`,
    }),
    h(
      "span",
      {},
      `Tier ${t.index} at ${t.unit_price} per ${unitLabel}: ${t.units_to_next_tier} ${unitLabel} to the next tier (from ${t.up_to})`,
    ),
  );
}

function metersTable(summary: Summary, meters: ViewMeter[]): HTMLElement {
  if (!summary.meters.length) return message("No usage this period.");
  const byKey = new Map(meters.map((m) => [m.key, m]));
  return h(
    "div",
    { class: "meter-list" },
    summary.meters.map((m) => {
      const v = byKey.get(m.meter);
      const unit = v?.unit ?? "";
      return h(
        "article",
        { class: "meter", "data-meter": m.meter },
        h("h3", {}, v?.name ?? m.meter),
        h(
          "p",
          { class: "figures-line" },
          h("span", { "data-meter-quantity": m.meter }, `${m.quantity} ${unit}`),
          " · ",
          h("strong", { "data-meter-amount": m.meter }, money(m.amount, summary.currency)),
          // The summary's total is after credits; a meter's amount is what it charged, before them.
          summary.credits !== undefined ? h("span", { class: "muted" }, " before credits") : null,
        ),
        limitBar(m, unit, summary.currency),
        tierLine(m, unit),
      );
    }),
  );
}

function forecastTable(f: Forecast, zone: string): HTMLElement {
  const m = (amount: string) => money(amount, f.currency);
  return h(
    "div",
    {},
    h(
      "p",
      {},
      `${m(f.total_to_date)} to date, ${m(f.forecast_total)} expected by ${dayLabel(f.period.end, zone)}, before ` +
        `credits: projected by the ${methodLabel(f.method)}.`,
    ),
    table(
      "Forecast per meter",
      ["Meter", "To date", "Expected", "Amount to date", "Expected amount"],
      f.meters.map((x) =>
        h(
          "tr",
          {},
          h("td", {}, x.meter),
          h("td", { class: "num" }, x.quantity_to_date),
          h("td", { class: "num" }, x.forecast_quantity),
          h("td", { class: "num" }, m(x.amount_to_date)),
          h("td", { class: "num" }, m(x.forecast_amount)),
        ),
      ),
      [1, 2, 3, 4],
    ),
  );
}

function creditsBlock(c: Credits): HTMLElement {
  return h(
    "div",
    {},
    h("p", {}, "Balance ", h("strong", { "data-testid": "credits-balance" }, money(c.balance, c.currency))),
    c.grants.length
      ? table(
          "Credit grants",
          ["Grant", "Amount", "Remaining", "Expires"],
          c.grants.map((g) =>
            h(
              "tr",
              {},
              h("td", {}, g.description ?? g.id, g.voided_at ? " (voided)" : ""),
              h("td", { class: "num" }, g.amount),
              h("td", { class: "num" }, g.remaining),
              h("td", {}, g.expires_at ? when(g.expires_at) : "never"),
            ),
          ),
          [1, 2],
        )
      : message("No grants."),
  );
}

function invoiceBlock(inv: Invoice, zone: string): HTMLElement {
  const rows = inv.lines.map((l) =>
    h(
      "tr",
      { class: l.kind === "adjustment" || l.kind === "credit" ? l.kind : null },
      h("td", { class: "line" }, l.description || l.meter || "", l.kind === "adjustment" ? " (adjustment)" : ""),
      h("td", { class: "num" }, "quantity" in l ? l.quantity : ""),
      h("td", { class: "num", "data-field": "amount" }, l.amount),
    ),
  );
  const foot = (label: string, value: string | undefined, testid?: string) =>
    value === undefined
      ? null
      : h(
          "tr",
          {},
          h("th", { scope: "row", colspan: 2 }, label),
          h("td", { class: "num", "data-testid": testid ?? null }, value),
        );
  const draft = inv.status === "draft";
  return h(
    "div",
    { class: "invoice", "data-invoice": inv.id },
    h(
      "p",
      { class: "muted" },
      `${draft ? "Draft" : `Invoice ${inv.number}`} · ${periodLabel(inv.period, zone)} · ${inv.currency ?? ""}`,
    ),
    // Fits a phone: descriptions wrap, so the amounts stay in view without scrolling sideways.
    table("Invoice lines", ["Line", "Quantity", "Amount"], rows, [1, 2], { fit: true }),
    h(
      "table",
      { class: "totals" },
      h(
        "tbody",
        {},
        foot("Subtotal", inv.subtotal),
        foot("Credits", inv.credits, draft ? "draft-credits" : undefined),
        foot("Adjustments", inv.adjustments),
        foot("Total", money(inv.total, inv.currency), draft ? "draft-total" : undefined),
      ),
    ),
  );
}

async function download(api: Api, id: string, info: CustomerInfo): Promise<void> {
  // Fetched with the key in a header and saved from a Blob: the key never goes into a URL.
  const blob = await api.blob("/v1/usage/export", {
    customer: id,
    granularity: "day",
    from: info.period.start,
    to: info.period.end,
  });
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: `usage-${id}-${info.period.start.slice(0, 7)}.csv` });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
