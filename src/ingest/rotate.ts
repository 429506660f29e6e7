// Upkeep of the key store (keys.ts): rotation of the hot table, the merge of the sealed one into the cold tier,
// and the flip to the merged cold table. Each step is its own transaction and can be resumed where a crash left
// it; event_key_state says where that is. One process at a time does it (an advisory lock).
//   rotate: the current hot table becomes sealed and the other (empty) one current — under the key store's lock
//           taken exclusively, so every transaction that wrote the sealed table has ended and every later one
//           sees its keys as committed.
//   build:  the other cold table is filled with the current cold keys and the sealed ones, less the keys older
//           than the window (their dedupe ended), packed by bucket. Ingest goes on meanwhile.
//   flip:   under the exclusive lock again, the built cold table becomes current and the sealed hot table free.
//   clear:  the tables no longer current are emptied (TRUNCATE, which waits for nobody: no transaction uses them).
import type { Db, Queryable } from "../db/types.js";
import { DEFAULT_WINDOW_MS, KEY_LOCK, secondOf } from "./keys.js";

interface State {
  hot: number;
  cold: number;
  hot_since: Date;
  sealed: boolean;
  built: boolean;
  /** The current cold table's shift and keys. */
  shift: number;
  keys: string;
}

interface KeyUpkeepOptions {
  windowMs?: number;
  /** Rotate a hot table older than this (default: a day). */
  rotateAfterMs?: number;
  /** Rotate a hot table larger than this, heap and index (default 512 MiB, about 7 million keys). */
  hotMaxBytes?: number;
  /** Rotate whatever the hot table's age and size (tests, the benchmark). */
  force?: boolean;
  /** false: rotate only, leave the merge and the flip for next time (tests). */
  merge?: boolean;
  /** How long a rotation or a flip waits for open ingest transactions before it gives up until next time. */
  lockTimeoutMs?: number;
}

/** What an upkeep did (a type, not an interface: the prune job's declared return type spells it out). */
type KeyUpkeep = {
  rotated: boolean;
  merged_keys: number;
  flipped: boolean;
  collisions_deleted: number;
};

const DAY_MS = 86_400_000;

async function readState(q: Queryable): Promise<State> {
  const { rows } = await q.query<State>(
    `SELECT hot, cold, hot_since, sealed, built, CASE cold WHEN 0 THEN shift_0 ELSE shift_1 END AS shift,
            (CASE cold WHEN 0 THEN keys_0 ELSE keys_1 END)::text AS keys
     FROM event_key_state`,
  );
  return rows[0] as State;
}

/** Runs what is due. Does nothing if another process is at it. */
export async function maintainKeys(db: Db, now: Date, opts: KeyUpkeepOptions = {}): Promise<KeyUpkeep> {
  const done: KeyUpkeep = { rotated: false, merged_keys: 0, flipped: false, collisions_deleted: 0 };
  const result = await db.tryWithLock("event-key-upkeep", async () => {
    const cut = secondOf(now.getTime() - (opts.windowMs ?? DEFAULT_WINDOW_MS));
    // Short: ingest transactions queue behind a waiting exclusive lock, so a long wait would stall ingest; a step
    // that does not get its lock in time is tried again at the next upkeep.
    const lockTimeout = opts.lockTimeoutMs ?? 200;
    await clear(db, await readState(db), lockTimeout);
    let s = await readState(db);
    if (!s.sealed && (opts.force || (await rotationDue(db, s, now, opts)))) {
      done.rotated = await exclusively(db, lockTimeout, (tx) =>
        tx.query(
          `UPDATE event_key_state SET hot = 1 - hot, hot_since = $1, sealed = true
           WHERE NOT sealed AND hot = $2 AND NOT EXISTS (SELECT 1 FROM event_keys_hot_${1 - s.hot})`,
          [now, s.hot],
        ),
      );
      s = await readState(db);
    }
    if (opts.merge === false) return done;
    if (s.sealed && !s.built) {
      done.merged_keys = await build(db, s, cut, lockTimeout).catch((err: { code?: string }) => {
        if (err.code === "55P03") return 0; // a reader held the table past the timeout: next time
        throw err;
      });
      s = await readState(db);
    }
    if (s.built) {
      done.flipped = await exclusively(db, lockTimeout, (tx) =>
        tx.query(
          `UPDATE event_key_state SET cold = 1 - cold, sealed = false, built = false
           WHERE built AND cold = $1`,
          [s.cold],
        ),
      );
      if (done.flipped) await clear(db, await readState(db), lockTimeout);
    }
    const { rowCount } = await db.query("DELETE FROM event_key_collisions WHERE r < $1", [cut]);
    done.collisions_deleted = rowCount;
    return done;
  });
  return result.acquired ? result.value : done;
}

async function rotationDue(db: Db, s: State, now: Date, opts: KeyUpkeepOptions): Promise<boolean> {
  if (now.getTime() - s.hot_since.getTime() >= (opts.rotateAfterMs ?? DAY_MS)) {
    const { rows } = await db.query<{ any: boolean }>(`SELECT EXISTS (SELECT 1 FROM event_keys_hot_${s.hot}) AS any`);
    if (rows[0]?.any) return true;
  }
  const { rows } = await db.query<{ bytes: string }>("SELECT pg_total_relation_size($1::regclass)::text AS bytes", [
    `event_keys_hot_${s.hot}`,
  ]);
  return Number(rows[0]?.bytes ?? 0) > (opts.hotMaxBytes ?? 512 * 1024 * 1024);
}

/** Runs `change` holding the key store's lock exclusively; false if open transactions held it past the timeout. */
async function exclusively(
  db: Db,
  timeoutMs: number,
  change: (tx: Queryable) => Promise<{ rowCount: number }>,
): Promise<boolean> {
  try {
    return await db.transaction(async (tx) => {
      // Waiting for the lock queues new ingest transactions behind it: bounded by the timeout.
      await tx.query(`SET LOCAL lock_timeout = '${Math.max(1, Math.floor(timeoutMs))}ms'`, []);
      await tx.query("SELECT pg_advisory_xact_lock($1::bigint)", [KEY_LOCK]);
      return (await change(tx)).rowCount === 1;
    });
  } catch (err) {
    if ((err as { code?: string }).code === "55P03") return false; // lock_timeout: next time
    throw err;
  }
}

/** Fills the other cold table with the current cold keys and the sealed ones received at or after `cut`. */
async function build(db: Db, s: State, cut: number, lockTimeoutMs: number): Promise<number> {
  const next = `event_keys_cold_${1 - s.cold}`;
  const cold = `event_keys_cold_${s.cold}`;
  const sealed = `event_keys_hot_${1 - s.hot}`;
  return db.transaction(async (tx) => {
    // Exact checks and receipts read every table (event_key_matches): the TRUNCATE waits for them, not longer.
    await tx.query(`SET LOCAL lock_timeout = '${Math.max(1, Math.floor(lockTimeoutMs))}ms'`, []);
    await tx.query(`TRUNCATE ${next}`, []);
    await tx.query("SET LOCAL lock_timeout = 0", []);
    const sealedKeys = Number((await tx.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${sealed}`)).rows[0]?.n);
    const shift = Number(
      (await tx.query<{ s: number }>("SELECT event_key_shift($1) AS s", [Number(s.keys) + sealedKeys])).rows[0]?.s,
    );
    const sql = shift === Number(s.shift) ? mergeSql(cold, sealed, shift) : regroupSql(cold, sealed, shift);
    const { rows } = await tx.query<{ n: string | null }>(
      `WITH built AS (INSERT INTO ${next} (bucket, hb, h2s, ts, rs) ${sql} RETURNING cardinality(rs) AS n)
       SELECT sum(n)::text AS n FROM built`,
      [cut],
    );
    await tx.query(
      `UPDATE event_key_state SET shift_${1 - s.cold} = $2, keys_${1 - s.cold} = $3
       WHERE sealed AND NOT built AND cold = $1`,
      [s.cold, shift, rows[0]?.n ?? "0"],
    );
    await tx.query("UPDATE event_key_state SET built = true WHERE sealed AND NOT built AND cold = $1", [s.cold]);
    return sealedKeys;
  });
}

/**
 * The rows of the next cold table with the same shift: bucket by bucket, a cold row keeps its keys (less those
 * before $1) and gains the sealed keys of its bucket. Element i of h2s, ts, rs belongs to bytes 8i-7…8i of hb.
 */
function mergeSql(cold: string, sealed: string, shift: number): string {
  const whole = "c.bucket IS NULL OR $1 <= ALL (c.rs)";
  const kept = (array: string) => `CASE WHEN ${whole} THEN c.${array}
      ELSE ARRAY(SELECT c.${array}[i] FROM generate_subscripts(c.rs, 1) AS i WHERE c.rs[i] >= $1 ORDER BY i) END`;
  return `
    SELECT bucket, m.hb, m.h2s, m.ts, m.rs
    FROM (
      SELECT coalesce(c.bucket, n.bucket) AS bucket,
             coalesce(CASE WHEN ${whole} THEN c.hb ELSE (
               SELECT string_agg(substr(c.hb, i * 8 - 7, 8), ''::bytea ORDER BY i)
               FROM generate_subscripts(c.rs, 1) AS i WHERE c.rs[i] >= $1) END, ''::bytea)
               || coalesce(n.hb, ''::bytea) AS hb,
             ${kept("h2s")} || coalesce(n.h2s, '{}') AS h2s,
             ${kept("ts")} || coalesce(n.ts, '{}') AS ts,
             ${kept("rs")} || coalesce(n.rs, '{}') AS rs
      FROM ${cold} c
      FULL JOIN (
        -- One aggregate step takes each input row for every aggregate in turn: the columns stay aligned.
        SELECT (h >> ${shift})::integer AS bucket, string_agg(int8send(h), ''::bytea) AS hb, array_agg(h2) AS h2s,
               array_agg(t) AS ts, array_agg(r) AS rs
        FROM ${sealed} WHERE r >= $1 GROUP BY 1
      ) AS n USING (bucket)
    ) AS m
    WHERE cardinality(m.rs) > 0`;
}

/** The rows of the next cold table with another shift (the keys doubled or halved): every key bucketed anew. */
function regroupSql(cold: string, sealed: string, shift: number): string {
  return `
    SELECT (k.h >> ${shift})::integer, string_agg(int8send(k.h), ''::bytea), array_agg(k.h2), array_agg(k.t),
           array_agg(k.r)
    FROM (
      SELECT event_key_at(c.hb, i) AS h, c.h2s[i] AS h2, c.ts[i] AS t, c.rs[i] AS r
      FROM ${cold} c CROSS JOIN LATERAL generate_subscripts(c.rs, 1) AS i
      WHERE c.rs[i] >= $1
      UNION ALL
      SELECT h, h2, t, r FROM ${sealed} WHERE r >= $1
    ) AS k
    GROUP BY 1`;
}

/**
 * Empties the tables no transaction writes or probes: the other hot one unless sealed, the other cold one unless
 * built. Exact checks and receipts read them (event_key_matches): a TRUNCATE waits for those up to the timeout, and
 * is otherwise left for next time.
 */
async function clear(db: Db, s: State, lockTimeoutMs: number): Promise<void> {
  const idle = [
    ...(s.sealed ? [] : [`event_keys_hot_${1 - s.hot}`]),
    ...(s.built ? [] : [`event_keys_cold_${1 - s.cold}`]),
  ];
  for (const table of idle) {
    const { rows } = await db.query<{ any: boolean }>(`SELECT EXISTS (SELECT 1 FROM ${table}) AS any`);
    if (!rows[0]?.any) continue;
    try {
      await db.transaction(async (tx) => {
        await tx.query(`SET LOCAL lock_timeout = '${Math.max(1, Math.floor(lockTimeoutMs))}ms'`, []);
        await tx.query(`TRUNCATE ${table}`, []);
      });
    } catch (err) {
      if ((err as { code?: string }).code !== "55P03") throw err;
    }
  }
}
