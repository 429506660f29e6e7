// Quantities of grouped prices: a meter's aggregation over an interval per combination of the grouped dimensions,
// read from the rollups like every other total — for one customer, or for every customer at once (simulations).
import type { Meter } from "../catalog/meters.js";
import type { Queryable } from "../db/types.js";
import { dimensionsObject } from "../dimensions/query.js";
import type { GroupQuantity } from "../pricing/invoice.js";
import { Dec } from "../pricing/money.js";
import type { Period } from "../pricing/segments.js";
import type { RollupState } from "../rollups/series.js";
import { rangeFigures } from "../rollups/totals.js";

/** A grouped quantity read: a meter's totals over an interval per combination of some of its dimensions. */
export interface GroupedRead {
  interval: Period;
  meter: string;
  groupBy: string[];
}

/** One grouped read for every customer (or one): customer → its groups. */
export async function readGroupsByCustomer(
  db: Queryable,
  r: GroupedRead,
  meters: ReadonlyMap<string, Meter>,
  customer?: string,
  state?: RollupState,
): Promise<Map<string, GroupQuantity[]>> {
  const out = new Map<string, GroupQuantity[]>();
  const m = meters.get(r.meter);
  if (!m) return out;
  const rows = await rangeFigures(
    db,
    { from: r.interval.start, to: r.interval.end, customer, meter: r.meter, groupBy: r.groupBy, state },
    m.aggregation,
  );
  for (const t of rows) {
    const list = out.get(t.customer) ?? [];
    list.push({ dimensions: dimensionsObject(r.groupBy, t.dimensionValues), quantity: new Dec(t.value) });
    out.set(t.customer, list);
  }
  return out;
}

/** The groups of one customer. */
export async function readGroups(
  db: Queryable,
  r: GroupedRead,
  meters: ReadonlyMap<string, Meter>,
  customer: string,
  state?: RollupState,
): Promise<GroupQuantity[]> {
  return (await readGroupsByCustomer(db, r, meters, customer, state)).get(customer) ?? [];
}
