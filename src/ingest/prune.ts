// Dedupe keys are kept for the dedupe window (and serve receipts meanwhile); older ones are deleted.
import type { Db } from "../db/types.js";

/** Deletes keys received before `before`, in batches, so a huge backlog never holds one long lock. */
export async function pruneDedupeKeys(db: Db, before: Date): Promise<number> {
  let deleted = 0;
  for (;;) {
    const { rowCount } = await db.query(
      `DELETE FROM event_keys WHERE ctid = ANY (ARRAY(
         SELECT ctid FROM event_keys WHERE received_at < $1 LIMIT 10000))`,
      [before],
    );
    deleted += rowCount;
    if (rowCount < 10_000) return deleted;
  }
}
