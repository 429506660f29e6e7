// Invoice lines and the per-meter summary from priced segments (pure). One line per graduated tier holding units
// in a segment, one line per segment for the other models, each base fee a line of its own; every line rounded
// half-up to the currency's minor unit, the total the sum of the rounded lines. Summaries are derived from the
// same lines, so a summary, an invoice preview and a money limit can never disagree.
import { compareValues, type Dimensions } from "../dimensions/values.js";
import { nextUnitTier, type PriceVersion, type RatedLine, rate, specFor, type Tier } from "./models.js";
import { type Dec, formatDecimal, roundMoney, sum, ZERO } from "./money.js";
import { type Proration, proratedAmount } from "./proration.js";
import type { Fee, Segment } from "./segments.js";

/** One combination of a grouped price's dimensions and its quantity. */
export interface GroupQuantity {
  dimensions: Dimensions;
  quantity: Dec;
}

export interface PricedSegment extends Segment {
  /** The meter's aggregation over the segment. */
  quantity: Dec;
  /** Versions with group_by: the aggregation over the segment per combination of the grouped dimensions. */
  groups?: GroupQuantity[];
}

export interface InvoiceLine {
  kind: "usage" | "base_fee" | "fixed";
  plan: string;
  /** null: a fixed charge (it belongs to no meter). */
  meter: string | null;
  description: string;
  quantity: Dec;
  /** Rounded to the currency's minor unit. */
  amount: Dec;
  segment: { start: Date; end: Date };
  tier?: number;
  unitPrice?: Dec;
  /** Grouped prices: the group this line prices. */
  dimensions?: Dimensions;
  /** Fixed charges: the charge's key. */
  charge?: string;
  /** Base fees and fixed charges billed for part of the period. */
  proration?: Proration;
  /** Usage before the subscription's trial_end, priced 0. */
  trial?: boolean;
}

export interface Invoice {
  currency: string;
  lines: InvoiceLine[];
  total: Dec;
}

export interface MeterLabel {
  name: string;
  unit: string;
}

/** " [model: gpt-4o, token_type: (none)]" for a grouped line. */
const groupLabel = (dims: Dimensions | undefined) =>
  dims
    ? ` [${Object.entries(dims)
        .map(([k, v]) => `${k}: ${v ?? "(none)"}`)
        .join(", ")}]`
    : "";

function describe(v: PriceVersion, line: RatedLine, meterLabel: MeterLabel, dims?: Dimensions): string {
  const label = { ...meterLabel, name: `${meterLabel.name}${groupLabel(dims)}` };
  const q = formatDecimal(line.quantity);
  const flat = line.flatPrice && !line.flatPrice.isZero() ? ` + ${formatDecimal(line.flatPrice)} flat` : "";
  const price = line.unitPrice ? formatDecimal(line.unitPrice) : "0";
  switch (v.model) {
    case "per_unit":
      return `${label.name}: ${q} ${label.unit} × ${price}`;
    case "graduated": {
      const tiers = v.tiers as Tier[];
      const i = (line.tier as number) - 1;
      const lower = i === 0 ? "0" : formatDecimal((tiers[i - 1] as Tier).upTo as Dec);
      const upper = tiers[i]?.upTo ? ` up to ${formatDecimal(tiers[i]?.upTo as Dec)}` : "";
      return `${label.name}, tier ${line.tier} (above ${lower}${upper}): ${q} ${label.unit} × ${price}${flat}`;
    }
    case "volume":
      return line.tier
        ? `${label.name}, volume tier ${line.tier}: ${q} ${label.unit} × ${price}${flat}`
        : `${label.name}: no usage`;
    case "package": {
      const size = formatDecimal(v.packageSize as Dec);
      return `${label.name}: ${q} ${label.unit} in ${formatDecimal(line.packages ?? ZERO)} package(s) of ${size} × ${price}`;
    }
  }
}

const fallbackLabel = (meter: string): MeterLabel => ({ name: meter, unit: "units" });

const byMeterName = new Intl.Collator().compare;

const hoursNote = (p: Proration | null) => (p ? ` (${p.hours} of ${p.periodHours} h)` : "");

/** The line of a base fee or of a fixed charge's quantity segment, prorated by hours. */
function feeLine(fee: Fee, currency: string, labels: ReadonlyMap<string, MeterLabel>): InvoiceLine {
  const common = {
    plan: fee.plan,
    segment: { start: fee.start, end: fee.end },
    ...(fee.proration ? { proration: fee.proration } : {}),
  };
  if (fee.kind === "base_fee") {
    const label = labels.get(fee.meter) ?? fallbackLabel(fee.meter);
    return {
      ...common,
      kind: "base_fee",
      meter: fee.meter,
      description: `${label.name}: base fee (plan ${fee.plan})${hoursNote(fee.proration)}`,
      quantity: ZERO.plus(1),
      amount: proratedAmount(fee.version.baseFee as Dec, fee.proration, currency),
    };
  }
  const q = formatDecimal(fee.quantity);
  return {
    ...common,
    kind: "fixed",
    meter: null,
    charge: fee.charge,
    description: `${fee.name}: ${q} × ${formatDecimal(fee.unitPrice)} (plan ${fee.plan})${hoursNote(fee.proration)}`,
    quantity: fee.quantity,
    unitPrice: fee.unitPrice,
    amount: proratedAmount(fee.quantity.times(fee.unitPrice), fee.proration, currency),
  };
}

export function priceInvoice(
  currency: string,
  segments: PricedSegment[],
  fees: Fee[],
  labels: ReadonlyMap<string, MeterLabel> = new Map(),
  opts: { totalOnly?: boolean } = {},
): Invoice {
  const describing = !opts.totalOnly;
  const lines: InvoiceLine[] = fees.map((fee) => feeLine(fee, currency, labels));
  for (const segment of segments) {
    const label = labels.get(segment.meter) ?? fallbackLabel(segment.meter);
    // A grouped price prices each combination on its own (its own tiers), by its override or the version's spec.
    const parts = segment.version.groupBy?.length
      ? (segment.groups ?? []).map((g) => ({ spec: specFor(segment.version, g.dimensions), ...g }))
      : [{ spec: segment.version, quantity: segment.quantity, dimensions: undefined }];
    for (const part of parts) {
      for (const rated of rate(part.spec, part.quantity)) {
        // A trial's usage keeps its lines and quantities, at 0.
        const amount = segment.trial ? ZERO : roundMoney(rated.amount, currency);
        lines.push({
          kind: "usage",
          plan: segment.plan,
          meter: segment.meter,
          description: describing ? describe(part.spec, rated, label, part.dimensions) : "",
          quantity: rated.quantity,
          amount,
          segment: { start: segment.start, end: segment.end },
          ...(segment.trial ? { trial: true } : {}),
          ...(rated.tier !== undefined ? { tier: rated.tier } : {}),
          ...(rated.unitPrice !== undefined ? { unitPrice: rated.unitPrice } : {}),
          ...(part.dimensions ? { dimensions: part.dimensions } : {}),
        });
      }
    }
  }
  // Only the total is asked for (a simulation prices thousands of invoices): the lines' order does not matter.
  if (opts.totalOnly) return { currency, lines, total: sum(lines.map((l) => l.amount)) };
  const values = (l: InvoiceLine) => Object.values(l.dimensions ?? {});
  const rank = { base_fee: 0, usage: 1, fixed: 2 };
  lines.sort(
    (a, b) =>
      (a.meter === null ? 1 : 0) - (b.meter === null ? 1 : 0) ||
      byMeterName(a.meter ?? a.charge ?? "", b.meter ?? b.charge ?? "") ||
      rank[a.kind] - rank[b.kind] ||
      a.segment.start.getTime() - b.segment.start.getTime() ||
      compareValues(values(a), values(b)) ||
      (a.tier ?? 0) - (b.tier ?? 0),
  );
  return { currency, lines, total: sum(lines.map((l) => l.amount)) };
}

export interface MeterSummary {
  meter: string;
  /** The meter's aggregation over the whole period. */
  quantity: Dec;
  /** The sum of the meter's invoice lines (usage and base fee). */
  amount: Dec;
  /** For tiered prices: the tier that prices the next unit in the current segment. */
  tier?: { index: number; upTo: Dec | null; unitPrice: Dec; flatPrice: Dec; unitsToNextTier: Dec | null };
  /** Grouped prices: per combination, its period quantity and the sum of its lines. */
  groups?: { dimensions: Dimensions; quantity: Dec; amount: Dec }[];
}

const groupKey = (d: Dimensions) => JSON.stringify(Object.entries(d));

/** Per group of a meter: the period quantities given, and the amounts of the lines carrying the same dimensions. */
function summarizeGroups(lines: InvoiceLine[], quantities: readonly GroupQuantity[]): MeterSummary["groups"] {
  const out = new Map<string, { dimensions: Dimensions; quantity: Dec; amount: Dec }>();
  for (const q of quantities)
    out.set(groupKey(q.dimensions), { dimensions: q.dimensions, quantity: q.quantity, amount: ZERO });
  for (const l of lines) {
    if (!l.dimensions) continue;
    const k = groupKey(l.dimensions);
    const g = out.get(k) ?? { dimensions: l.dimensions, quantity: ZERO, amount: ZERO };
    g.amount = g.amount.plus(l.amount);
    out.set(k, g);
  }
  return [...out.values()].sort(
    (a, b) =>
      Object.keys(a.dimensions).join().localeCompare(Object.keys(b.dimensions).join()) ||
      compareValues(Object.values(a.dimensions), Object.values(b.dimensions)),
  );
}

/** Per meter: its period quantity, its amount from the invoice lines, and where it stands in its tiers. */
export function summarize(
  invoice: Invoice,
  segments: PricedSegment[],
  periodQuantities: ReadonlyMap<string, Dec>,
  periodGroups: ReadonlyMap<string, readonly GroupQuantity[]> = new Map(),
): MeterSummary[] {
  const meters = new Set([
    ...periodQuantities.keys(),
    ...invoice.lines.flatMap((l) => (l.meter === null ? [] : [l.meter])),
    ...segments.map((s) => s.meter),
  ]);
  return [...meters].sort().map((meter) => {
    const amount = sum(invoice.lines.filter((l) => l.meter === meter).map((l) => l.amount));
    const current = segments
      .filter((s) => s.meter === meter)
      .reduce<PricedSegment | undefined>((a, s) => (!a || s.start > a.start ? s : a), undefined);
    const out: MeterSummary = { meter, quantity: periodQuantities.get(meter) ?? ZERO, amount };
    const grouped = segments.some((s) => s.meter === meter && s.version.groupBy?.length);
    if (grouped) {
      const lines = invoice.lines.filter((l) => l.meter === meter);
      out.groups = summarizeGroups(lines, periodGroups.get(meter) ?? []);
    }
    const tiers = current?.version.tiers;
    const tiered = current?.version.model === "graduated" || current?.version.model === "volume";
    if (current && tiers && tiered && !current.version.groupBy?.length) {
      const next = nextUnitTier(current.quantity, tiers);
      out.tier = {
        index: next.index,
        upTo: next.tier.upTo,
        unitPrice: next.tier.unitPrice,
        flatPrice: next.tier.flatPrice,
        unitsToNextTier: next.unitsToNextTier,
      };
    }
    return out;
  });
}

/** A fixed charge of the period: its latest quantity and the sum of its lines. */
export interface FixedSummary {
  charge: string;
  quantity: Dec;
  amount: Dec;
}

/** Per fixed charge on the invoice: the quantity of its latest segment and the sum of its lines. */
export function summarizeFixed(invoice: Invoice): FixedSummary[] {
  const out = new Map<string, FixedSummary & { at: number }>();
  for (const l of invoice.lines) {
    if (l.kind !== "fixed" || !l.charge) continue;
    const found = out.get(l.charge);
    const at = l.segment.start.getTime();
    if (!found) out.set(l.charge, { charge: l.charge, quantity: l.quantity, amount: l.amount, at });
    else {
      found.amount = found.amount.plus(l.amount);
      if (at >= found.at) Object.assign(found, { quantity: l.quantity, at });
    }
  }
  return [...out.values()]
    .sort((a, b) => a.charge.localeCompare(b.charge))
    .map(({ charge, quantity, amount }) => ({ charge, quantity, amount }));
}
