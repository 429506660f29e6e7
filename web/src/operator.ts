// The operator's view: customers ranked by spend or by growth against last period, with state, run rate and
// forecast (one call: /v1/dashboard/customers); then meters, plans with their price versions on a timeline,
// Stripe reconciliation and recent alerts — those need an admin key and say so otherwise.
import { type Api, ApiError } from "./api.js";
import { fill, h, message, panel, replace, table, when } from "./dom.js";
import { money, percent, periodBounds, periodLabel, plural, signedMoney } from "./format.js";
import { stateBadge } from "./states.js";
import type {
  Alert,
  Alerts,
  Meters,
  Overview,
  OverviewCustomer,
  Plan,
  Plans,
  Reconciliation,
  ReconciliationRow,
  State,
  ViewMeter,
} from "./types.js";

type Ranking = "spend" | "growth";
const PAGE = 100;

/** The overview, or — for a key bound to one customer — nothing: the caller opens that customer's view instead. */
export async function operatorView(api: Api, root: HTMLElement, onBound: (customer: string) => void): Promise<void> {
  const view = root.dataset.view;
  const o = await api.get<Overview>("/v1/dashboard/customers");
  if (root.dataset.view !== view) return; // another view took the page meanwhile
  if (o.bound_customer) return onBound(o.bound_customer);
  const panels = {
    meters: panel("Meters", "meters-panel", message("Loading…")),
    plans: panel("Plans and price versions", "plans-panel", message("Loading…")),
    recon: panel("Stripe reconciliation", "recon-panel", message("Loading…")),
    alerts: panel("Recent alerts", "alerts-panel", message("Loading…")),
  };
  replace(
    root,
    h("h1", {}, "Customers"),
    h(
      "p",
      { class: "fresh", "data-testid": "as-of" },
      `Period ${periodLabel(o.period)} (customers on their own billing cycle show theirs) · data as of ` +
        `${when(o.as_of)} · forecasts: each customer's projection to its period's end, before credits (as on its own ` +
        "page)",
    ),
    totalsCards(o),
    statesList(o),
    rankingPanel(o),
    ...Object.values(panels),
  );
  performance.mark("tally:meaningful");
  root.dataset.ready = "true";
  await loadPanels(api, o, panels);
  // Only if no other view has replaced this one meanwhile.
  if (root.dataset.view === view) root.dataset.complete = "true";
}

function totalsCards(o: Overview): HTMLElement {
  return h(
    "div",
    { class: "cards" },
    o.totals.length
      ? o.totals.map((t) =>
          h(
            "div",
            { class: "card", "data-currency": t.currency },
            h(
              "span",
              { class: "label", "data-testid": "total-label" },
              `${plural(t.customers, "customer")} · ${t.currency}`,
            ),
            h("strong", { "data-testid": "total-spend" }, money(t.spend, t.currency)),
            h(
              "span",
              {},
              `forecast ${money(t.forecast, t.currency)} before credits · last period ${money(t.previous_spend, t.currency)}`,
            ),
          ),
        )
      : message("No customer has a plan yet."),
  );
}

function statesList(o: Overview): HTMLElement {
  return h(
    "ul",
    { class: "states", "aria-label": "Customers by state" },
    (Object.entries(o.states) as [State, number][]).map(([s, n]) => h("li", {}, stateBadge(s), ` ${n}`)),
  );
}

/** The ranking with its controls: ordered by spend or growth, filtered by id or name, a page at a time. */
function rankingPanel(o: Overview): HTMLElement {
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
  const more = (left: number) =>
    h(
      "button",
      {
        type: "button",
        class: "secondary",
        onclick: () => {
          shown += PAGE * 5;
          draw();
        },
      },
      `Show more (${left} left)`,
    );
  const draw = () => {
    for (const b of rankButtons) b.setAttribute("aria-pressed", String(b.dataset.rank === ranking));
    // Ranking only orders rows; each figure shown is still the API's string.
    const rows = o.customers
      .filter((c) => !filter || c.id.toLowerCase().includes(filter) || (c.name ?? "").toLowerCase().includes(filter))
      .sort(ranking === "spend" ? () => 0 : (a, b) => Number(b.growth) - Number(a.growth));
    const head = ["Customer", "Plan", "State", "Spend", "Last period", "Forecast", "Growth", "Run rate"];
    replace(
      list,
      table(
        `Customers ranked by ${ranking}`,
        head,
        rows.slice(0, shown).map((c) => customerRow(c, o)),
        [3, 4, 5, 6, 7],
      ),
      rows.length > shown ? more(rows.length - shown) : null,
    );
    list.dataset.ranking = ranking;
  };
  draw();
  const controls = h(
    "div",
    { class: "controls" },
    h("div", { class: "seg", role: "group", "aria-label": "Rank customers" }, rankButtons),
    h("label", { for: "customer-filter" }, "Find "),
    search,
  );
  return panel("Ranking", "ranking", controls, list);
}

function customerRow(c: OverviewCustomer, o: Overview): HTMLElement {
  const m = (amount: string) => money(amount, c.currency);
  // A customer on a billing cycle of its own: its period, which its figures are of.
  const own = c.period.start !== o.period.start || c.period.end !== o.period.end;
  return h(
    "tr",
    { "data-customer": c.id },
    h(
      "td",
      {},
      h("a", { href: `#/customers/${encodeURIComponent(c.id)}` }, c.name ?? c.id),
      c.name ? h("span", { class: "muted" }, ` ${c.id}`) : null,
      own
        ? h(
            "div",
            { class: "muted", "data-field": "period", title: periodBounds(c.period) },
            periodLabel(c.period, c.period.time_zone),
          )
        : null,
    ),
    h("td", {}, c.plan ?? "—"),
    h("td", {}, stateBadge(c.state)),
    h("td", { class: "num", "data-field": "spend" }, m(c.spend)),
    h("td", { class: "num", "data-field": "previous_spend" }, m(c.previous_spend)),
    h("td", { class: "num", "data-field": "forecast", title: "before credits" }, m(c.forecast)),
    h(
      "td",
      { class: "num", "data-field": "growth" },
      `${signedMoney(c.growth, c.currency)} (${percent(c.growth_ratio)})`,
    ),
    h("td", { class: "num", "data-field": "run_rate_per_day" }, `${m(c.run_rate_per_day)} / day`),
  );
}

type Panels = Record<"meters" | "plans" | "recon" | "alerts", HTMLElement>;

/** The panels below the ranking, asked for once it is on screen (they would queue in front of it). */
async function loadPanels(api: Api, o: Overview, p: Panels): Promise<void> {
  const needsAdmin = (el: HTMLElement) => (e: unknown) => {
    const refused = e instanceof ApiError && e.status === 403;
    fill(
      el,
      message(refused ? "Needs an admin key." : `Unavailable: ${(e as Error).message}`, refused ? "status" : "alert"),
    );
  };
  const metersP = api.get<Meters>("/v1/meters");
  const plansP = api.get<Plans>("/v1/plans");
  // With sync off nothing is sent to Stripe: every row would read as out of sync, which says nothing.
  const reconP = o.stripe_sync ? api.get<Reconciliation>("/v1/stripe/reconciliation") : undefined;
  const alertsP = api.get<Alerts>("/v1/alerts");
  await Promise.all([
    metersP.then((r) => fill(p.meters, metersTable(r.data)), needsAdmin(p.meters)),
    plansP.then(
      (r) => fill(p.plans, r.data.length ? r.data.map(planTimeline) : message("No plans yet.")),
      needsAdmin(p.plans),
    ),
    reconP
      ? reconP.then((r) => fill(p.recon, reconciliation(r.data)), needsAdmin(p.recon))
      : fill(
          p.recon,
          h(
            "p",
            { role: "status", "data-testid": "stripe-off" },
            "Stripe sync is off (STRIPE_SECRET_KEY is not set): Tally sends no usage to Stripe, so there is nothing " +
              "to reconcile.",
          ),
        ),
    alertsP.then(
      (r) => fill(p.alerts, r.data.length ? alertsTable(r.data.slice(0, 20)) : message("No alerts.")),
      needsAdmin(p.alerts),
    ),
  ]);
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
        h("td", {}, a.meter ?? "credits"),
        h("td", {}, a.level),
        h("td", { class: "num" }, a.threshold),
        h("td", { class: "num" }, a.value),
      ),
    ),
    [4, 5],
  );
}

/** Each meter's price versions as marks on one time axis, oldest version to today. */
function planTimeline(p: Plan): HTMLElement {
  const times = p.prices.flatMap((x) => x.versions.map((v) => Date.parse(v.effective_from)));
  const start = Math.min(...times, Date.now());
  const span = Math.max(Date.now() - start, 86_400_000);
  const mark = (v: Plan["prices"][number]["versions"][number]) => {
    const price = v.unit_price ? ` ${v.unit_price}` : "";
    const li = h(
      "li",
      {},
      h("span", { class: "mark", title: `${v.model}${price}` }, `${v.effective_from.slice(0, 10)} ${v.model}${price}`),
    );
    // Set through the style object, which the CSP allows (style attributes it does not).
    li.style.left = `${Math.min(100, ((Date.parse(v.effective_from) - start) / span) * 100).toFixed(2)}%`;
    return li;
  };
  return h(
    "div",
    { class: "plan", "data-plan": p.key },
    h("h3", {}, `${p.name} `, h("span", { class: "muted" }, `${p.key} · ${p.currency}`)),
    p.prices.map((x) =>
      h(
        "div",
        { class: "timeline-row" },
        h("span", { class: "timeline-label" }, x.meter),
        h("ol", { class: "timeline", "aria-label": `${x.meter} price versions` }, x.versions.map(mark)),
      ),
    ),
  );
}

function reconciliation(rows: ReconciliationRow[]): HTMLElement {
  const counts = new Map<string, number>();
  for (const r of rows) counts.set(r.status, (counts.get(r.status) ?? 0) + 1);
  const off = rows.filter((r) => r.status !== "in_sync");
  const row = (r: ReconciliationRow) =>
    h(
      "tr",
      {},
      h("td", {}, r.customer),
      h("td", {}, r.meter),
      h("td", { class: "num" }, r.quantity),
      h("td", { class: "num" }, r.sent),
      h("td", { class: "num" }, r.difference),
      h("td", {}, r.status),
    );
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
          off.slice(0, 50).map(row),
          [2, 3, 4],
        )
      : null,
  );
}
