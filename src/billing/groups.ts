// Quantities of grouped prices: for each segment priced by a version with group_by, the meter's aggregation over the
// segment per combination of the grouped dimensions (one grouped totals read per segment), and the same over the
// whole period for the summary. Reads rollups like every other total.
import type { Meter } from "../catalog/meters.js";
import type { Queryable } from "../db/types.js";
import { dimensionsObject } from "../dimensions/query.js";
import type { GroupQuantity, PricedSegment } from "../pricing/invoice.js";
import { Dec } from "../pricing/money.js";
import type { Period } from "../pricing/segments.js";
import { quantityOf, rangeTotals } from "../rollups/totals.js";

type Reader = (interval: Period, meter: string, groupBy: string[]) => Promise<GroupQuantity[]>;

/** Grouped totals of one customer, each (interval, meter, group_by) read once. */
function groupReader(db: Queryable, customer: string, meters: ReadonlyMap<string, Meter>): Reader {
  const done = new Map<string, Promise<GroupQuantity[]>>();
  return (interval, meter, groupBy) => {
    const k = JSON.stringify([interval.start, interval.end, meter, groupBy]);
    let found = done.get(k);
    if (!found) {
      found = rangeTotals(db, { from: interval.start, to: interval.end, customer, meter, groupBy }).then((rows) => {
        const m = meters.get(meter);
        return rows.map((t) => ({
          dimensions: dimensionsObject(groupBy, t.dimensionValues),
          quantity: new Dec(m ? quantityOf(t, m.aggregation) : "0"),
        }));
      });
      done.set(k, found);
    }
    return found;
  };
}

/**
 * Sets `groups` on the segments priced by a grouped version, and returns, per grouped meter, its groups over the
 * whole period (by the group_by of the meter's last segment).
 */
export async function groupQuantities(
  db: Queryable,
  customer: string,
  period: Period,
  segments: PricedSegment[],
  meters: ReadonlyMap<string, Meter>,
): Promise<Map<string, GroupQuantity[]>> {
  const read = groupReader(db, customer, meters);
  const periodGroups = new Map<string, GroupQuantity[]>();
  const last = new Map<string, string[]>();
  for (const s of segments) {
    const groupBy = s.version.groupBy;
    if (!groupBy?.length) continue;
    s.groups = await read(s, s.meter, groupBy);
    last.set(s.meter, groupBy);
  }
  for (const [meter, groupBy] of last) periodGroups.set(meter, await read(period, meter, groupBy));
  return periodGroups;
}
