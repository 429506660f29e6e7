// The usage chart of one meter: hour (last 48 h), day (this period) or month (last 12 months), grouped by one of
// the meter's dimensions when it has any. uPlot draws it; a table under it carries the same figures, as the API
// gave them, for keyboards and screen readers. "This period" spans the customer's own billing period, in UTC days
// (the usage series' buckets) from the day it starts to the day it ends in: it draws the days that have begun, and
// the axis runs on to the period's end, so the days still to come show as empty, never as zero. data-draws counts
// redraws (the browser tests wait on it).
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import type { Api } from "./api.js";
import { h, replace, table } from "./dom.js";
import { elapsedEnd } from "./format.js";
import type { UsageRow, ViewMeter } from "./types.js";

type Granularity = "hour" | "day" | "month";
const GRANULARITIES: { g: Granularity; label: string }[] = [
  { g: "hour", label: "48 hours" },
  { g: "day", label: "This period" },
  { g: "month", label: "12 months" },
];
const COLORS = ["#1f5fbf", "#b3480b", "#237a3b", "#8a2be2", "#a0142f", "#00707a", "#6b5900", "#444"];
const MAX_SERIES = 7;

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

interface Range {
  /** What is read and drawn: [from, to). */
  from: Date;
  to: Date;
  /** Where the axis ends: past `to` when days of the period are still to come. */
  axisTo: Date;
}

function range(g: Granularity, period: { start: string; end: string }, asOf: string): Range {
  if (g === "hour") {
    const to = Math.floor(Date.parse(asOf) / HOUR) * HOUR + HOUR;
    return { from: new Date(to - 48 * HOUR), to: new Date(to), axisTo: new Date(to) };
  }
  // A period that starts or ends inside a UTC day (an anchored or a local-time cycle) spans the whole of that day.
  const start = new Date(Math.floor(Date.parse(period.start) / DAY) * DAY);
  if (g === "day") {
    const end = new Date(Math.ceil(Date.parse(period.end) / DAY) * DAY);
    const days = { start: start.toISOString(), end: end.toISOString() };
    return { from: start, to: elapsedEnd(days, asOf), axisTo: end };
  }
  // The twelve UTC months up to the one in progress.
  const now = new Date(asOf);
  const end = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1));
  const from = new Date(Date.UTC(end.getUTCFullYear(), end.getUTCMonth() - 12, 1));
  return { from, to: end, axisTo: end };
}

/** Every bucket start in [from, to), so empty buckets that have begun draw as 0. */
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

/** The lines to draw: the largest groups each on its own, the rest together (the table lists them all). */
function linesOf(rows: UsageRow[], xs: number[], name: string): { label: string; ys: number[] }[] {
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
  const ranked = [...series.keys()].sort((a, b) => (totals.get(b) ?? 0) - (totals.get(a) ?? 0));
  const rest = ranked.slice(MAX_SERIES);
  const lines = ranked.slice(0, MAX_SERIES).map((l) => ({ label: l, ys: series.get(l) as number[] }));
  if (rest.length)
    lines.push({
      label: `${rest.length} others`,
      ys: xs.map((_, i) => rest.reduce((s, l) => s + (series.get(l)?.[i] ?? 0), 0)),
    });
  if (!lines.length) lines.push({ label: name, ys: xs.map(() => 0) });
  return lines;
}

function plotOptions(
  g: Granularity,
  meter: ViewMeter,
  lines: { label: string }[],
  r: Range,
  width: number,
): uPlot.Options {
  const bars = g !== "hour" && lines.length === 1 ? uPlot.paths.bars?.({ size: [0.7, 40] }) : undefined;
  // Days still to come keep their place on the axis, empty (half a bucket of margin each side, as bars need).
  const pad = g === "day" ? DAY / 2000 : 0;
  const lastBucket = g === "day" ? r.axisTo.getTime() - DAY : undefined;
  return {
    width,
    height: 220,
    scales: {
      x: {
        time: true,
        ...(lastBucket !== undefined
          ? { range: (): uPlot.Range.MinMax => [r.from.getTime() / 1000 - pad, lastBucket / 1000 + pad] }
          : {}),
      },
    },
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
}

function figuresTable(meter: ViewMeter, g: Granularity, groupBy: string | null, rows: UsageRow[]) {
  return [
    h("summary", {}, `Figures (${rows.length})`),
    table(
      `${meter.name} usage by ${g}`,
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
  ];
}

/** The time-range buttons and, for a meter with dimensions, the grouping select; each calls `choose`. */
function chartControls(
  meter: ViewMeter,
  initial: Granularity,
  choose: (change: { g?: Granularity; by?: string | null }) => void,
) {
  const buttons = GRANULARITIES.map(({ g, label }) =>
    h(
      "button",
      { type: "button", "data-granularity": g, "aria-pressed": String(g === initial), onclick: () => choose({ g }) },
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
      { id, onchange: (e: Event) => choose({ by: (e.target as HTMLSelectElement).value || null }) },
      h("option", { value: "" }, "No grouping"),
      meter.dimensions.map((d) => h("option", { value: d }, d)),
    );
    controls.append(h("label", { for: id }, "Group by "), select);
  }
  return { controls, buttons };
}

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
  const { controls, buttons } = chartControls(meter, granularity, (c) =>
    set(c.g ?? granularity, c.by !== undefined ? c.by : groupBy),
  );
  root.append(controls, canvas, status, figures);

  async function set(g: Granularity, by: string | null) {
    granularity = g;
    groupBy = by;
    for (const b of buttons) b.setAttribute("aria-pressed", String(b.dataset.granularity === g));
    status.textContent = "Loading…";
    const r = range(g, period, asOf);
    const query = { customer, meter: meter.key, granularity: g, from: r.from.toISOString(), to: r.to.toISOString() };
    let rows: UsageRow[];
    try {
      rows = (await api.get<{ data: UsageRow[] }>("/v1/usage", { ...query, group_by: by ?? undefined })).data;
    } catch (e) {
      status.textContent = `Usage could not be loaded: ${(e as Error).message}`;
      return;
    }
    if (g !== granularity || by !== groupBy) return; // a newer choice is on its way
    draw(rows, r);
  }

  function draw(rows: UsageRow[], r: Range) {
    const xs = buckets(granularity, r.from, r.to);
    const lines = linesOf(rows, xs, meter.name);
    plot?.destroy();
    const opts = plotOptions(granularity, meter, lines, r, Math.max(280, root.clientWidth || 600));
    plot = new uPlot(opts, [xs.map((x) => x / 1000), ...lines.map((l) => l.ys)], canvas);
    canvas.setAttribute(
      "aria-label",
      `${meter.name} usage by ${granularity}${groupBy ? `, grouped by ${groupBy}` : ""}: ${rows.length} values`,
    );
    replace(figures, ...figuresTable(meter, granularity, groupBy, rows));
    const last = new Date(r.to.getTime() - DAY).toISOString().slice(0, 10);
    const toCome = r.to < r.axisTo ? `Days up to ${last}; the days still to come are left empty.` : "";
    // Days are UTC days: a period that starts or ends inside one shares that day with the period next to it.
    const offDay = (t: string) => Date.parse(t) % DAY !== 0;
    const shared =
      granularity === "day" && (offDay(period.start) || offDay(period.end))
        ? `UTC days; the period runs from ${period.start} to ${period.end}.`
        : "";
    status.textContent = [rows.length ? "" : "No usage in this range.", toCome, shared].filter(Boolean).join(" ");
    draws += 1;
    Object.assign(root.dataset, {
      granularity,
      groupBy: groupBy ?? "",
      series: String(lines.length),
      rows: String(rows.length),
      buckets: String(xs.length),
      draws: String(draws),
    });
  }

  const onResize = () => plot?.setSize({ width: Math.max(280, root.clientWidth), height: 220 });
  window.addEventListener("resize", onResize);
  queueMicrotask(() => void set(granularity, groupBy));
  return root;
}
