// The customer view — the operator's drill-down and the embeddable page alike: per meter quantity, amount, limits
// and tier progress; usage charts; credits; the draft invoice with credits and adjustments; finalized invoices;
// the forecast; a CSV download; and how fresh it all is (as_of). Amounts are shown exactly as the API wrote them.
import { type Api, optional } from "./api.js";
import { usageChart } from "./chart.js";
import { fill, h, message, money, panel, replace, table, when } from "./dom.js";
import { stateBadge } from "./states.js";
import type { Credits, CustomerInfo, Forecast, Invoice, Overview, Summary, SummaryMeter, ViewMeter } from "./types.js";

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
  const currency = summary.currency;
  const head = h(
    "div",
    { class: "customer-head" },
    h("h1", {}, info.customer.name ?? info.customer.id),
    h(
      "p",
      { class: "muted" },
      info.customer.name ? `${info.customer.id} · ` : "",
      info.plan ? `plan ${info.plan.key} · ` : "no plan · ",
      `period ${info.period.start.slice(0, 10)} to ${info.period.end.slice(0, 10)}`,
    ),
    h("p", { class: "fresh", "data-testid": "as-of" }, `Data as of ${when(summary.as_of)}`),
  );
  const stateSlot = h("span", { "data-testid": "customer-state" });
  const totals = h(
    "div",
    { class: "cards" },
    h(
      "div",
      { class: "card" },
      h("span", { class: "label" }, "Spend this period"),
      h("strong", { "data-testid": "summary-total" }, money(summary.total, currency)),
    ),
    h("div", { class: "card" }, h("span", { class: "label" }, "State"), stateSlot),
    h(
      "div",
      { class: "card" },
      h("span", { class: "label" }, "Forecast"),
      h("strong", { "data-testid": "forecast-total" }, "…"),
    ),
  );
  const metersPanel = panel("Meters", "meters", metersTable(summary, info.meters));
  const charts = panel(
    "Usage",
    "usage",
    info.meters.length
      ? info.meters.map((m) =>
          h("div", { class: "meter-chart" }, h("h3", {}, m.name), usageChart(api, id, m, info.period, summary.as_of)),
        )
      : message("No meters yet."),
  );
  const csv = h(
    "button",
    { type: "button", class: "secondary", onclick: () => void download(api, id, info) },
    "Download usage (CSV)",
  );
  const creditsPanel = panel("Prepaid credits", "credits", message("Loading…"));
  const draftPanel = panel("Draft invoice", "draft", message("Loading…"));
  const finalPanel = panel("Finalized invoices", "final", message("Loading…"));
  const forecastPanel = panel("Forecast", "forecast", message("Loading…"));
  replace(
    root,
    head,
    totals,
    metersPanel,
    charts,
    h("p", {}, csv),
    forecastPanel,
    creditsPanel,
    draftPanel,
    finalPanel,
  );
  performance.mark("tally:meaningful");
  root.dataset.ready = "true";

  const stateP = api.get<Overview>("/v1/dashboard/customers", { customer: id });
  const forecastP = optional(api.get<Forecast>(`/v1/customers/${q}/forecast`));
  const creditsP = optional(api.get<Credits>(`/v1/customers/${q}/credits`));
  const draftP = api.get<{ data: Invoice[] }>("/v1/invoices", { customer: id, status: "draft" });
  const finalP = api.get<{ data: Invoice[] }>("/v1/invoices", { customer: id, status: "final" });
  await Promise.all([
    stateP.then(
      (o) => replace(stateSlot, stateBadge(o.customers[0]?.state ?? "ok")),
      () => replace(stateSlot, "unknown"),
    ),
    forecastP.then(
      (f) => {
        const total = root.querySelector('[data-testid="forecast-total"]') as HTMLElement;
        total.textContent = f ? money(f.forecast_total, f.currency) : "—";
        fill(forecastPanel, f ? forecastTable(f) : message("No forecast."));
      },
      (e: Error) => fill(forecastPanel, message(`Forecast unavailable: ${e.message}`, "alert")),
    ),
    creditsP.then(
      (c) => fill(creditsPanel, c?.grants.length ? creditsBlock(c) : message("No prepaid credits.")),
      (e: Error) => fill(creditsPanel, message(`Credits unavailable: ${e.message}`, "alert")),
    ),
    draftP.then(
      (r) => fill(draftPanel, r.data[0] ? invoiceBlock(r.data[0]) : message("No draft invoice.")),
      (e: Error) => fill(draftPanel, message(`Invoices unavailable: ${e.message}`, "alert")),
    ),
    finalP.then(
      (r) =>
        fill(
          finalPanel,
          r.data.length
            ? r.data.map((inv) =>
                h(
                  "details",
                  {},
                  h(
                    "summary",
                    {},
                    `${inv.number ?? inv.id} · ${inv.period.start.slice(0, 7)} · ${money(inv.total, inv.currency)}`,
                  ),
                  invoiceBlock(inv),
                ),
              )
            : message("No finalized invoices yet."),
        ),
      (e: Error) => fill(finalPanel, message(`Invoices unavailable: ${e.message}`, "alert")),
    ),
  ]);
  // Only if no other view has replaced this one meanwhile.
  if (root.dataset.view === view) root.dataset.complete = "true";
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
        ),
        limitBar(m, unit, summary.currency),
        tierLine(m, unit),
      );
    }),
  );
}

function forecastTable(f: Forecast): HTMLElement {
  return h(
    "div",
    {},
    h(
      "p",
      {},
      `${money(f.total_to_date, f.currency)} to date, ${money(f.forecast_total, f.currency)} expected by ${f.period.end.slice(0, 10)} (${f.method}).`,
    ),
    table(
      "Forecast per meter",
      ["Meter", "To date", "Expected", "Amount to date", "Expected amount"],
      f.meters.map((m) =>
        h(
          "tr",
          {},
          h("td", {}, m.meter),
          h("td", { class: "num" }, m.quantity_to_date),
          h("td", { class: "num" }, m.forecast_quantity),
          h("td", { class: "num" }, m.amount_to_date),
          h("td", { class: "num" }, m.forecast_amount),
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

function invoiceBlock(inv: Invoice): HTMLElement {
  const rows = inv.lines.map((l) =>
    h(
      "tr",
      { class: l.adjusts ? "adjustment" : l.grant ? "credit" : null },
      h("td", {}, l.description || l.meter || "", l.adjusts ? " (adjustment)" : ""),
      h("td", { class: "num" }, l.quantity ?? ""),
      h("td", { class: "num" }, l.amount),
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
  return h(
    "div",
    { class: "invoice", "data-invoice": inv.id },
    h(
      "p",
      { class: "muted" },
      `${inv.status === "draft" ? "Draft" : `Invoice ${inv.number}`} · ${inv.period.start.slice(0, 7)} · ${inv.currency ?? ""}`,
    ),
    table("Invoice lines", ["Line", "Quantity", "Amount"], rows, [1, 2]),
    h(
      "table",
      { class: "totals" },
      h(
        "tbody",
        {},
        foot("Subtotal", inv.subtotal),
        foot("Credits", inv.credits, inv.status === "draft" ? "draft-credits" : undefined),
        foot("Adjustments", inv.adjustments),
        foot("Total", money(inv.total, inv.currency), inv.status === "draft" ? "draft-total" : undefined),
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
