// Quantities of grouped prices: a meter's aggregation over an interval per combination of the grouped dimensions,
// read from the rollups like every other total — for one customer, or for every customer at once (simulations).
import type { Meter } from "../catalog/meters.js";
import type { Queryable } from "../db/types.js";
import { dimensionsObject } from "../dimensions/query.js";
import type { GroupQuantity } from "../pricing/invoice.js";
import { Dec } from "../pricing/money.js";
import type { Period } from "../pricing/segments.js";
import { quantityOf, rangeTotals } from "../rollups/totals.js";

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
): Promise<Map<string, GroupQuantity[]>> {
  const rows = await rangeTotals(db, {
    from: r.interval.start,
    to: r.interval.end,
    customer,
    meter: r.meter,
    groupBy: r.groupBy,
  });
  const m = meters.get(r.meter);
  const out = new Map<string, GroupQuantity[]>();
  for (const t of rows) {
    const list = out.get(t.customer) ?? [];
    list.push({
      dimensions: dimensionsObject(r.groupBy, t.dimensionValues),
      quantity: new Dec(m ? quantityOf(t, m.aggregation) : "0"),
    });
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
): Promise<GroupQuantity[]> {
  return (await readGroupsByCustomer(db, r, meters, customer)).get(customer) ?? [];
}
