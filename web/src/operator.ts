// The operator's view: customers ranked by spend or by growth against last period, with state, run rate and
// forecast (one call: /v1/dashboard/customers); then meters, plans with their price versions on a timeline,
// Stripe reconciliation and recent alerts — those need an admin key and say so otherwise.
import { type Api, ApiError } from "./api.js";
import { fill, h, message, money, panel, replace, table, when } from "./dom.js";
import { stateBadge } from "./states.js";
import type { Alert, Overview, OverviewCustomer, ViewMeter } from "./types.js";

type Ranking = "spend" | "growth";
const PAGE = 100;

const percent = (ratio: string | null) => {
  if (ratio === null) return "new";
  const p = Number(ratio) * 100; // a ratio, not money: rounding for display is fine
  return `${p > 0 ? "+" : ""}${p.toFixed(1)}%`;
};

/** The overview, or — for a key bound to one customer — nothing: the caller opens that customer's view instead. */
export async function operatorView(api: Api, root: HTMLElement, onBound: (customer: string) => void): Promise<void> {
  const view = root.dataset.view;
  const o = await api.get<Overview>("/v1/dashboard/customers");
  if (root.dataset.view !== view) return; // another view took the page meanwhile
  if (o.bound_customer) return onBound(o.bound_customer);
  let ranking: Ranking = "spend";
  let shown = PAGE;
  let filter = "";
  const list = h("div", { id: "customer-list" });
  const rankButtons = (["spend", "growth"] as Ranking[]).map((r) =>
    h(
      "button",
      {
        type: "button",
        "data-rank": r,
        "aria-pressed": String(r === ranking),
        onclick: () => {
          ranking = r;
          draw();
        },
      },
      r === "spend" ? "By spend" : "By growth",
    ),
  );
  const search = h("input", {
    id: "customer-filter",
    type: "search",
    placeholder: "id or name",
    oninput: (e: Event) => {
      filter = (e.target as HTMLInputElement).value.toLowerCase();
      draw();
    },
  });

  const draw = () => {
    for (const b of rankButtons) b.setAttribute("aria-pressed", String(b.dataset.rank === ranking));
    // Ranking only orders rows; each figure shown is still the API's string.
    const rows = o.customers
      .filter((c) => !filter || c.id.toLowerCase().includes(filter) || (c.name ?? "").toLowerCase().includes(filter))
      .sort(ranking === "spend" ? () => 0 : (a, b) => Number(b.growth) - Number(a.growth));
    const visible = rows.slice(0, shown);
    replace(
      list,
      table(
        `Customers ranked by ${ranking}`,
        ["Customer", "Plan", "State", "Spend", "Last period", "Forecast", "Growth", "Run rate / day"],
        visible.map(customerRow),
        [3, 4, 5, 6, 7],
      ),
      rows.length > shown
        ? h(
            "button",
            {
              type: "button",
              class: "secondary",
              onclick: () => {
                shown += PAGE * 5;
                draw();
              },
            },
            `Show more (${rows.length - shown} left)`,
          )
        : null,
    );
    list.dataset.ranking = ranking;
  };
  draw();

  const states = h(
    "ul",
    { class: "states", "aria-label": "Customers by state" },
    (Object.entries(o.states) as [OverviewCustomer["state"], number][]).map(([s, n]) =>
      h("li", {}, stateBadge(s), ` ${n}`),
    ),
  );
  const totals = h(
    "div",
    { class: "cards" },
    o.totals.length
      ? o.totals.map((t) =>
          h(
            "div",
            { class: "card", "data-currency": t.currency },
            h("span", { class: "label" }, `${t.customers} customers · ${t.currency}`),
            h("strong", { "data-testid": "total-spend" }, money(t.spend, t.currency)),
            h(
              "span",
              {},
              `forecast ${money(t.forecast, t.currency)} · last period ${money(t.previous_spend, t.currency)}`,
            ),
          ),
        )
      : message("No customer has a plan yet."),
  );
  const metersPanel = panel("Meters", "meters-panel", message("Loading…"));
  const plansPanel = panel("Plans and price versions", "plans-panel", message("Loading…"));
  const reconPanel = panel("Stripe reconciliation", "recon-panel", message("Loading…"));
  const alertsPanel = panel("Recent alerts", "alerts-panel", message("Loading…"));
  replace(
    root,
    h("h1", {}, "Customers"),
    h(
      "p",
      { class: "fresh", "data-testid": "as-of" },
      `Period ${o.period.start.slice(0, 7)} · data as of ${when(o.as_of)} · forecast: linear run rate`,
    ),
    totals,
    states,
    panel(
      "Ranking",
      "ranking",
      h(
        "div",
        { class: "controls" },
        h("div", { class: "seg", role: "group", "aria-label": "Rank customers" }, rankButtons),
        h("label", { for: "customer-filter" }, "Find "),
        search,
      ),
      list,
    ),
    metersPanel,
    plansPanel,
    reconPanel,
    alertsPanel,
  );
  performance.mark("tally:meaningful");
  root.dataset.ready = "true";

  // The panels below the ranking are asked for once it is on screen (they would queue in front of it).
  const metersP = api.get<{ data: ViewMeter[] }>("/v1/meters");
  const plansP = api.get<{ data: Plan[] }>("/v1/plans");
  const reconP = api.get<{ data: Recon[] }>("/v1/stripe/reconciliation");
  const alertsP = api.get<{ data: Alert[] }>("/v1/alerts");

  const needsAdmin = (el: HTMLElement) => (e: unknown) =>
    fill(
      el,
      message(
        e instanceof ApiError && e.status === 403 ? "Needs an admin key." : `Unavailable: ${(e as Error).message}`,
        e instanceof ApiError && e.status === 403 ? "status" : "alert",
      ),
    );
  await Promise.all([
    metersP.then((r) => fill(metersPanel, metersTable(r.data)), needsAdmin(metersPanel)),
    plansP.then(
      (r) => fill(plansPanel, r.data.length ? r.data.map(planTimeline) : message("No plans yet.")),
      needsAdmin(plansPanel),
    ),
    reconP.then((r) => fill(reconPanel, reconciliation(r.data)), needsAdmin(reconPanel)),
    alertsP.then(
      (r) => fill(alertsPanel, r.data.length ? alertsTable(r.data.slice(0, 20)) : message("No alerts.")),
      needsAdmin(alertsPanel),
    ),
  ]);
  // Only if no other view has replaced this one meanwhile.
  if (root.dataset.view === view) root.dataset.complete = "true";
}

function metersTable(meters: ViewMeter[]): HTMLElement {
  return table(
    "Meters",
    ["Key", "Name", "Unit", "Aggregation", "Dimensions"],
    meters.map((m) =>
      h(
        "tr",
        {},
        h("td", {}, m.key),
        h("td", {}, m.name),
        h("td", {}, m.unit),
        h("td", {}, m.aggregation),
        h("td", {}, m.dimensions.join(", ") || "—"),
      ),
    ),
  );
}

function alertsTable(alerts: Alert[]): HTMLElement {
  return table(
    "Recent alerts",
    ["When", "Customer", "Meter", "Level", "Threshold", "Value"],
    alerts.map((a) =>
      h(
        "tr",
        {},
        h("td", {}, when(a.triggered_at)),
        h("td", {}, h("a", { href: `#/customers/${encodeURIComponent(a.customer)}` }, a.customer)),
        h("td", {}, a.meter),
        h("td", {}, a.level),
        h("td", { class: "num" }, a.threshold),
        h("td", { class: "num" }, a.value),
      ),
    ),
    [4, 5],
  );
}

function customerRow(c: OverviewCustomer): HTMLElement {
  return h(
    "tr",
    { "data-customer": c.id },
    h(
      "td",
      {},
      h("a", { href: `#/customers/${encodeURIComponent(c.id)}` }, c.name ?? c.id),
      c.name ? h("span", { class: "muted" }, ` ${c.id}`) : null,
    ),
    h("td", {}, c.plan ?? "—"),
    h("td", {}, stateBadge(c.state)),
    h("td", { class: "num", "data-field": "spend" }, money(c.spend, c.currency)),
    h("td", { class: "num" }, c.previous_spend),
    h("td", { class: "num", "data-field": "forecast" }, c.forecast),
    h("td", { class: "num" }, `${c.growth} (${percent(c.growth_ratio)})`),
    h("td", { class: "num" }, c.run_rate_per_day),
  );
}

interface Plan {
  key: string;
  name: string;
  currency: string;
  prices: { meter: string; versions: { effective_from: string; model: string; unit_price?: string }[] }[];
}

interface Recon {
  customer: string;
  meter: string;
  quantity: string;
  sent: string;
  difference: string;
  status: "in_sync" | "pending" | "error" | "unmapped";
}

/** Each meter's price versions as marks on one time axis, oldest version to today. */
function planTimeline(p: Plan): HTMLElement {
  const times = p.prices.flatMap((x) => x.versions.map((v) => Date.parse(v.effective_from)));
  const start = Math.min(...times, Date.now());
  const span = Math.max(Date.now() - start, 86_400_000);
  return h(
    "div",
    { class: "plan", "data-plan": p.key },
    h("h3", {}, `${p.name} `, h("span", { class: "muted" }, `${p.key} · ${p.currency}`)),
    p.prices.map((x) =>
      h(
        "div",
        { class: "timeline-row" },
        h("span", { class: "timeline-label" }, x.meter),
        h(
          "ol",
          { class: "timeline", "aria-label": `${x.meter} price versions` },
          x.versions.map((v) => {
            const li = h(
              "li",
              {},
              h(
                "span",
                { class: "mark", title: `${v.model} ${v.unit_price ?? ""}` },
                `${v.effective_from.slice(0, 10)} ${v.model}${v.unit_price ? ` ${v.unit_price}` : ""}`,
              ),
            );
            // Set through the style object, which the CSP allows (style attributes it does not).
            li.style.left = `${Math.min(100, ((Date.parse(v.effective_from) - start) / span) * 100).toFixed(2)}%`;
            return li;
          }),
        ),
      ),
    ),
  );
}

function reconciliation(rows: Recon[]): HTMLElement {
  const counts = new Map<string, number>();
  for (const r of rows) counts.set(r.status, (counts.get(r.status) ?? 0) + 1);
  const off = rows.filter((r) => r.status !== "in_sync");
  return h(
    "div",
    {},
    h(
      "p",
      { "data-testid": "recon-counts" },
      rows.length
        ? [...counts].map(([s, n]) => `${n} ${s.replace("_", " ")}`).join(" · ")
        : "Nothing to reconcile this period.",
    ),
    off.length
      ? table(
          "Rows not in sync",
          ["Customer", "Meter", "Tally", "Sent", "Difference", "Status"],
          off
            .slice(0, 50)
            .map((r) =>
              h(
                "tr",
                {},
                h("td", {}, r.customer),
                h("td", {}, r.meter),
                h("td", { class: "num" }, r.quantity),
                h("td", { class: "num" }, r.sent),
                h("td", { class: "num" }, r.difference),
                h("td", {}, r.status),
              ),
            ),
          [2, 3, 4],
        )
      : null,
  );
}
