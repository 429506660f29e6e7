// The guard's record of combinations per (customer, meter, month) is needed only while events can still arrive for
// that month: months that ended before the oldest accepted timestamp go.
import type { Db } from "../db/types.js";

export async function pruneDimensionUsage(db: Db, oldestAccepted: Date): Promise<number> {
  const before = new Date(Date.UTC(oldestAccepted.getUTCFullYear(), oldestAccepted.getUTCMonth(), 1));
  const used = await db.query("DELETE FROM dimension_usage WHERE month < $1", [before]);
  await db.query("DELETE FROM dimension_counts WHERE month < $1", [before]);
  return used.rowCount;
}
