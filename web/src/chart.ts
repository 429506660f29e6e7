// The usage chart of one meter: hour (last 48 h), day (this period) or month (last 12 months), grouped by one of
// the meter's dimensions when it has any. uPlot draws it; a table under it carries the same figures, as the API
// gave them, for keyboards and screen readers. data-draws counts redraws (the browser tests wait on it).
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import type { Api } from "./api.js";
import { h, replace, table } from "./dom.js";
import type { UsageRow, ViewMeter } from "./types.js";

export type Granularity = "hour" | "day" | "month";
const GRANULARITIES: { g: Granularity; label: string }[] = [
  { g: "hour", label: "48 hours" },
  { g: "day", label: "This period" },
  { g: "month", label: "12 months" },
];
const COLORS = ["#1f5fbf", "#b3480b", "#237a3b", "#8a2be2", "#a0142f", "#00707a", "#6b5900", "#444"];
const MAX_SERIES = 7;

const HOUR = 3_600_000;

function range(g: Granularity, period: { start: string; end: string }, asOf: string) {
  if (g === "hour") {
    const to = Math.floor(Date.parse(asOf) / HOUR) * HOUR + HOUR;
    return { from: new Date(to - 48 * HOUR), to: new Date(to) };
  }
  const start = new Date(period.start);
  if (g === "day") return { from: start, to: new Date(period.end) };
  return { from: new Date(Date.UTC(start.getUTCFullYear(), start.getUTCMonth() - 11, 1)), to: new Date(period.end) };
}

/** Every bucket start in [from, to), so empty buckets draw as 0. */
function buckets(g: Granularity, from: Date, to: Date): number[] {
  const out: number[] = [];
  const t = new Date(from);
  while (t < to && out.length < 400) {
    out.push(t.getTime());
    if (g === "hour") t.setTime(t.getTime() + HOUR);
    else if (g === "day") t.setUTCDate(t.getUTCDate() + 1);
    else t.setUTCMonth(t.getUTCMonth() + 1);
  }
  return out;
}

const groupLabel = (d: Record<string, string | null> | undefined) =>
  d
    ? Object.entries(d)
        .map(([k, v]) => `${k}=${v ?? "—"}`)
        .join(", ")
    : "all";

export function usageChart(
  api: Api,
  customer: string,
  meter: ViewMeter,
  period: { start: string; end: string },
  asOf: string,
): HTMLElement {
  let granularity: Granularity = "day";
  let groupBy: string | null = null;
  let plot: uPlot | undefined;
  let draws = 0;
  const canvas = h("div", { class: "chart-canvas", role: "img", "aria-label": `${meter.name} usage` });
  const figures = h("details", { class: "figures" });
  const status = h("p", { class: "muted", role: "status", "aria-live": "polite" });
  const root = h("div", { class: "chart", "data-meter": meter.key });
  const buttons = GRANULARITIES.map(({ g, label }) =>
    h(
      "button",
      {
        type: "button",
        "data-granularity": g,
        "aria-pressed": String(g === granularity),
        onclick: () => set(g, groupBy),
      },
      label,
    ),
  );
  const controls = h(
    "div",
    { class: "controls" },
    h("div", { class: "seg", role: "group", "aria-label": "Time range" }, buttons),
  );
  if (meter.dimensions.length) {
    const id = `group-${meter.key}`;
    const select = h(
      "select",
      { id, onchange: (e: Event) => set(granularity, (e.target as HTMLSelectElement).value || null) },
      h("option", { value: "" }, "No grouping"),
      meter.dimensions.map((d) => h("option", { value: d }, d)),
    );
    controls.append(h("label", { for: id }, "Group by "), select);
  }
  root.append(controls, canvas, status, figures);

  async function set(g: Granularity, by: string | null) {
    granularity = g;
    groupBy = by;
    for (const b of buttons) b.setAttribute("aria-pressed", String(b.dataset.granularity === g));
    status.textContent = "Loading…";
    const { from, to } = range(g, period, asOf);
    let rows: UsageRow[];
    try {
      const res = await api.get<{ data: UsageRow[] }>("/v1/usage", {
        customer,
        meter: meter.key,
        granularity: g,
        from: from.toISOString(),
        to: to.toISOString(),
        group_by: by ?? undefined,
      });
      rows = res.data;
    } catch (e) {
      status.textContent = `Usage could not be loaded: ${(e as Error).message}`;
      return;
    }
    if (g !== granularity || by !== groupBy) return; // a newer choice is on its way
    draw(rows, buckets(g, from, to));
  }

  function draw(rows: UsageRow[], xs: number[]) {
    const index = new Map(xs.map((x, i) => [x, i]));
    const series = new Map<string, number[]>();
    const totals = new Map<string, number>();
    for (const r of rows) {
      const label = groupLabel(r.dimensions);
      const ys = series.get(label) ?? xs.map(() => 0);
      const i = index.get(Date.parse(r.start));
      if (i !== undefined) ys[i] = (ys[i] ?? 0) + Number(r.value);
      series.set(label, ys);
      totals.set(label, (totals.get(label) ?? 0) + Number(r.value));
    }
    // The largest groups get their own line; the rest draw together (the table lists them all).
    const ranked = [...series.keys()].sort((a, b) => (totals.get(b) ?? 0) - (totals.get(a) ?? 0));
    const shown = ranked.slice(0, MAX_SERIES);
    const rest = ranked.slice(MAX_SERIES);
    const lines = shown.map((l) => ({ label: l, ys: series.get(l) as number[] }));
    if (rest.length)
      lines.push({
        label: `${rest.length} others`,
        ys: xs.map((_, i) => rest.reduce((s, l) => s + (series.get(l)?.[i] ?? 0), 0)),
      });
    if (!lines.length) lines.push({ label: meter.name, ys: xs.map(() => 0) });
    const bars = granularity !== "hour" && lines.length === 1 ? uPlot.paths.bars?.({ size: [0.7, 40] }) : undefined;
    const opts: uPlot.Options = {
      width: Math.max(280, root.clientWidth || 600),
      height: 220,
      scales: { x: { time: true } },
      series: [
        {},
        ...lines.map((l, i) => ({
          label: l.label,
          stroke: COLORS[i % COLORS.length],
          fill: bars ? `${COLORS[i % COLORS.length]}55` : undefined,
          width: 2,
          paths: bars,
          points: { show: !bars },
        })),
      ],
      axes: [{}, { label: meter.unit, size: 60 }],
    };
    plot?.destroy();
    plot = new uPlot(opts, [xs.map((x) => x / 1000), ...lines.map((l) => l.ys)], canvas);
    canvas.setAttribute(
      "aria-label",
      `${meter.name} usage by ${granularity}${groupBy ? `, grouped by ${groupBy}` : ""}: ${rows.length} values`,
    );
    replace(
      figures,
      h("summary", {}, `Figures (${rows.length})`),
      table(
        `${meter.name} usage by ${granularity}`,
        ["Start", groupBy ? "Group" : "", meter.unit].filter((x) => x !== ""),
        rows.map((r) =>
          h(
            "tr",
            {},
            h("td", {}, r.start),
            groupBy ? h("td", {}, groupLabel(r.dimensions)) : null,
            h("td", { class: "num" }, r.value),
          ),
        ),
        [groupBy ? 2 : 1],
      ),
    );
    status.textContent = rows.length ? "" : "No usage in this range.";
    draws += 1;
    Object.assign(root.dataset, {
      granularity,
      groupBy: groupBy ?? "",
      series: String(lines.length),
      rows: String(rows.length),
      draws: String(draws),
    });
  }

  const onResize = () => plot?.setSize({ width: Math.max(280, root.clientWidth), height: 220 });
  window.addEventListener("resize", onResize);
  queueMicrotask(() => void set(granularity, groupBy));
  return root;
}
