// Invoice lines and the per-meter summary from priced segments (pure). One line per graduated tier holding units
// in a segment, one line per segment for the other models, each base fee a line of its own; every line rounded
// half-up to the currency's minor unit, the total the sum of the rounded lines. Summaries are derived from the
// same lines, so a summary, an invoice preview and a money limit can never disagree.
import { nextUnitTier, type RatedLine, rate, type Tier } from "./models.js";
import { type Dec, formatDecimal, roundMoney, sum, ZERO } from "./money.js";
import type { BaseFee, Segment } from "./segments.js";

export interface PricedSegment extends Segment {
  /** The meter's aggregation over the segment. */
  quantity: Dec;
}

export interface InvoiceLine {
  kind: "usage" | "base_fee";
  plan: string;
  meter: string;
  description: string;
  quantity: Dec;
  /** Rounded to the currency's minor unit. */
  amount: Dec;
  segment: { start: Date; end: Date };
  tier?: number;
  unitPrice?: Dec;
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

function describe(segment: PricedSegment, line: RatedLine, label: MeterLabel): string {
  const v = segment.version;
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

export function priceInvoice(
  currency: string,
  segments: PricedSegment[],
  baseFees: BaseFee[],
  labels: ReadonlyMap<string, MeterLabel> = new Map(),
  opts: { descriptions?: boolean } = {},
): Invoice {
  const describing = opts.descriptions !== false;
  const lines: InvoiceLine[] = [];
  for (const fee of baseFees) {
    const label = labels.get(fee.meter) ?? fallbackLabel(fee.meter);
    lines.push({
      kind: "base_fee",
      plan: fee.plan,
      meter: fee.meter,
      description: `${label.name}: base fee (plan ${fee.plan})`,
      quantity: ZERO.plus(1),
      amount: roundMoney(fee.version.baseFee as Dec, currency),
      segment: { start: fee.start, end: fee.end },
    });
  }
  for (const segment of segments) {
    const label = labels.get(segment.meter) ?? fallbackLabel(segment.meter);
    for (const rated of rate(segment.version, segment.quantity)) {
      lines.push({
        kind: "usage",
        plan: segment.plan,
        meter: segment.meter,
        description: describing ? describe(segment, rated, label) : "",
        quantity: rated.quantity,
        amount: roundMoney(rated.amount, currency),
        segment: { start: segment.start, end: segment.end },
        ...(rated.tier !== undefined ? { tier: rated.tier } : {}),
        ...(rated.unitPrice !== undefined ? { unitPrice: rated.unitPrice } : {}),
      });
    }
  }
  lines.sort(
    (a, b) =>
      byMeterName(a.meter, b.meter) ||
      (a.kind === b.kind ? 0 : a.kind === "base_fee" ? -1 : 1) ||
      a.segment.start.getTime() - b.segment.start.getTime() ||
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
}

/** Per meter: its period quantity, its amount from the invoice lines, and where it stands in its tiers. */
export function summarize(
  invoice: Invoice,
  segments: PricedSegment[],
  periodQuantities: ReadonlyMap<string, Dec>,
): MeterSummary[] {
  const meters = new Set([
    ...periodQuantities.keys(),
    ...invoice.lines.map((l) => l.meter),
    ...segments.map((s) => s.meter),
  ]);
  return [...meters].sort().map((meter) => {
    const amount = sum(invoice.lines.filter((l) => l.meter === meter).map((l) => l.amount));
    const current = segments
      .filter((s) => s.meter === meter)
      .reduce<PricedSegment | undefined>((a, s) => (!a || s.start > a.start ? s : a), undefined);
    const out: MeterSummary = { meter, quantity: periodQuantities.get(meter) ?? ZERO, amount };
    const tiers = current?.version.tiers;
    if (current && tiers && (current.version.model === "graduated" || current.version.model === "volume")) {
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
