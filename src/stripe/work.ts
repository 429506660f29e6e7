// The Stripe work queue: rows with something to deliver, and the ledger writes around each send (pending before
// the request, confirmed or refused after it).
import type { Db, Queryable } from "../db/types.js";
import { Dec } from "../pricing/money.js";
import { carryRevert, firstSendable, type Planned } from "./rules.js";
import type { LedgerKind, PendingSend, WorkRow } from "./types.js";

/** A row still has something to deliver (same predicate as the partial index stripe_ledger_work). */
export const HAS_WORK = "(l.pending_identifier IS NOT NULL OR l.target <> l.covered OR l.scale <> l.covered_scale)";
/**
 * The last sendable second of the period ending at `<alias>.period_end` is inside Stripe's window ($n: the first
 * sendable hour, from firstSendable): it is the last second of the period's last hour (rules.ts's
 * lastSendableSecond, the rule itself).
 */
export const periodSendable = (n: number, alias = "l") => `${alias}.period_end - interval '1 hour' >= $${n}`;

/** The last sendable second of the row's bucket is inside Stripe's window ($n: the first sendable hour). */
export const bucketSendable = (n: number) =>
  `CASE WHEN l.kind = 'hour' THEN l.bucket >= $${n} ELSE ${periodSendable(n)} END`;

/** The timestamp of the row's next send is inside Stripe's window ($n, $n+1: sendableParams(now)). */
export const sendable = (n: number) =>
  `CASE WHEN l.pending_timestamp IS NOT NULL THEN l.pending_timestamp >= $${n} ELSE ${bucketSendable(n + 1)} END`;

/** The parameters of `sendable`: the window's start and the first sendable hour. */
export function sendableParams(now: Date): [Date, Date] {
  const first = firstSendable(now);
  return [first.window, first.hour];
}

interface WorkDbRow {
  customer_id: string;
  meter: string;
  kind: LedgerKind;
  bucket: Date;
  period: Date;
  period_end: Date;
  target: string;
  scale: string;
  covered: string;
  covered_scale: string;
  sent_units: string;
  seq: number;
  pending_identifier: string | null;
  pending_units: string | null;
  pending_target: string | null;
  pending_scale: string | null;
  pending_timestamp: Date | null;
  last_sent_timestamp: Date | null;
  stripe_customer_id: string | null;
  event_name: string | null;
  mapped: boolean;
}

/**
 * Rows with something to deliver and not waiting on an error, with their pair's current destination. `mapped` is
 * false when the customer or meter lost its Stripe mapping (the row waits), or the row is of a kind the meter no
 * longer has (retired by a change of aggregation: never sent).
 */
export async function loadWork(
  db: Queryable,
  which: "all" | "pending" = "all",
): Promise<{ rows: WorkRow[]; unmapped: number }> {
  const { rows } = await db.query<WorkDbRow>(
    `SELECT l.customer_id, l.meter, l.kind, l.bucket, l.period, l.period_end, l.target::text, l.scale::text, l.covered::text,
            l.covered_scale::text, l.sent_units::text, l.seq, l.pending_identifier, l.pending_units::text,
            l.pending_target::text, l.pending_scale::text, l.pending_timestamp, l.last_sent_timestamp,
            cu.stripe_customer_id, me.stripe_event_name AS event_name,
            COALESCE(p.kind = l.kind AND p.stripe_customer_id = cu.stripe_customer_id
                     AND p.event_name = me.stripe_event_name, false) AS mapped
     FROM stripe_ledger l
     LEFT JOIN customers cu ON cu.id = l.customer_id
     LEFT JOIN meters me ON me.key = l.meter
     LEFT JOIN stripe_pairs p ON p.customer_id = l.customer_id AND p.meter = l.meter
     WHERE ${which === "pending" ? "l.pending_identifier IS NOT NULL" : HAS_WORK}
       AND l.error_message IS NULL AND (p.kind IS NULL OR p.kind = l.kind)
     ORDER BY l.customer_id, l.meter, l.bucket`,
    [],
  );
  let unmapped = 0;
  const out: WorkRow[] = [];
  for (const r of rows) {
    if (!r.mapped || !r.stripe_customer_id || !r.event_name) {
      unmapped += 1;
      continue;
    }
    out.push({
      customer: r.customer_id,
      meter: r.meter,
      kind: r.kind,
      bucket: r.bucket,
      period: r.period,
      periodEnd: r.period_end,
      target: r.target,
      scale: r.scale,
      covered: r.covered,
      coveredScale: r.covered_scale,
      sentUnits: r.sent_units,
      seq: r.seq,
      pending:
        r.pending_identifier && r.pending_units && r.pending_target && r.pending_scale && r.pending_timestamp
          ? {
              identifier: r.pending_identifier,
              units: r.pending_units,
              target: r.pending_target,
              scale: r.pending_scale,
              timestamp: r.pending_timestamp,
            }
          : null,
      lastSentTimestamp: r.last_sent_timestamp,
      stripeCustomerId: r.stripe_customer_id,
      eventName: r.event_name,
    });
  }
  return { rows: out, unmapped };
}

export async function loadCarries(db: Queryable, rows: WorkRow[]): Promise<Map<string, Map<string, Dec>>> {
  const hourRows = rows.filter((r) => r.kind === "hour");
  const out = new Map<string, Map<string, Dec>>();
  if (hourRows.length === 0) return out;
  const { rows: carries } = await db.query<{ customer_id: string; meter: string; period: Date; carry: string }>(
    `SELECT c.customer_id, c.meter, c.period, c.carry::text FROM stripe_carry c
     JOIN (SELECT DISTINCT u.c, u.m, u.p FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS u(c, m, p)) AS t
       ON c.customer_id = t.c AND c.meter = t.m AND c.period = t.p`,
    [hourRows.map((r) => r.customer), hourRows.map((r) => r.meter), hourRows.map((r) => r.period)],
  );
  for (const c of carries) {
    const key = pairKey(c.customer_id, c.meter);
    let byPeriod = out.get(key);
    if (!byPeriod) {
      byPeriod = new Map();
      out.set(key, byPeriod);
    }
    byPeriod.set(c.period.toISOString(), new Dec(c.carry));
  }
  return out;
}

export const pairKey = (customer: string, meter: string) => `${customer}\u0000${meter}`;

/**
 * Writes planned sends as pending (before any request), moves skipped rows' coverage on, records values too large
 * for Stripe as errors, and stores the carries, in one transaction. Returns the identifiers written: only those
 * may be sent, since a send the ledger does not hold could never be confirmed.
 */
export async function writePlans(
  db: Db,
  planned: Planned[],
  carries: { customer: string; meter: string; period: Date; carry: string }[],
  now: Date,
): Promise<Set<string>> {
  const sends = planned.filter((p): p is Extract<Planned, { kind: "send" }> => p.kind === "send");
  const skips = planned.filter((p) => p.kind === "skip");
  const large = planned.filter((p): p is Extract<Planned, { kind: "too_large" }> => p.kind === "too_large");
  const keys = (list: { row: WorkRow }[]) => [
    list.map((p) => p.row.customer),
    list.map((p) => p.row.meter),
    list.map((p) => p.row.kind),
    list.map((p) => p.row.bucket),
  ];
  const match =
    "l.customer_id = t.c AND l.meter = t.m AND l.kind = t.k AND l.bucket = t.b AND l.pending_identifier IS NULL";
  return db.transaction(async (tx) => {
    const written = new Set<string>();
    if (sends.length > 0) {
      const { rows } = await tx.query<{ id: string }>(
        `UPDATE stripe_ledger l SET seq = l.seq + 1, pending_identifier = t.id, pending_units = t.u,
           pending_target = t.v, pending_scale = t.s, pending_timestamp = t.ts, pending_since = $11, attempts = 0,
           last_attempt_error = NULL, updated_at = now()
         FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::numeric[],
                     $7::numeric[], $8::numeric[], $9::timestamptz[], $10::int[]) AS t(c, m, k, b, id, u, v, s, ts, seq)
         WHERE ${match} AND l.seq + 1 = t.seq
         RETURNING l.pending_identifier AS id`,
        [
          ...keys(sends),
          sends.map((p) => p.pending.identifier),
          sends.map((p) => p.pending.units),
          sends.map((p) => p.pending.target),
          sends.map((p) => p.pending.scale),
          sends.map((p) => p.pending.timestamp),
          sends.map((p) => p.row.seq + 1),
          now,
        ],
      );
      for (const r of rows) written.add(r.id);
    }
    if (skips.length > 0) {
      await tx.query(
        `UPDATE stripe_ledger l SET covered = t.v, covered_scale = t.s, updated_at = now()
         FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::numeric[], $6::numeric[])
           AS t(c, m, k, b, v, s)
         WHERE ${match}`,
        [...keys(skips), skips.map((p) => p.row.target), skips.map((p) => p.row.scale)],
      );
    }
    if (large.length > 0) {
      await tx.query(
        `UPDATE stripe_ledger l SET error_code = 'value_too_large', error_at = $6, updated_at = now(),
           error_message = 'the value to send (' || t.u || ' units) has more than the 15 significant digits Stripe accepts; lower stripe_scale'
         FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[]) AS t(c, m, k, b, u)
         WHERE ${match}`,
        [...keys(large), large.map((p) => p.units), now],
      );
    }
    if (carries.length > 0) {
      await tx.query(
        `INSERT INTO stripe_carry (customer_id, meter, period, carry)
         SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::numeric[])
         ON CONFLICT (customer_id, meter, period) DO UPDATE SET carry = EXCLUDED.carry`,
        [
          carries.map((c) => c.customer),
          carries.map((c) => c.meter),
          carries.map((c) => c.period),
          carries.map((c) => c.carry),
        ],
      );
    }
    return written;
  });
}

/** Stripe has these sends (accepted now, or earlier: "already exists"): their units count as sent. */
export async function confirmSends(db: Queryable, identifiers: string[], at: Date): Promise<number> {
  if (identifiers.length === 0) return 0;
  const { rowCount } = await db.query(
    `UPDATE stripe_ledger l SET
       sent_units = CASE WHEN l.kind = 'hour' THEN l.sent_units + l.pending_units ELSE l.pending_units END,
       covered = l.pending_target, covered_scale = l.pending_scale, last_sent_timestamp = l.pending_timestamp,
       delivered_at = $2, sends_delivered = l.sends_delivered + 1,
       pending_identifier = NULL, pending_units = NULL, pending_target = NULL, pending_scale = NULL,
       pending_timestamp = NULL, pending_since = NULL, attempts = 0, last_attempt_error = NULL, updated_at = now()
     WHERE l.pending_identifier = ANY($1::text[])`,
    [identifiers, at],
  );
  return rowCount;
}

/** A send Stripe did not take and may still arrive on a retry: counted and described, kept pending. */
export async function noteAttempt(db: Queryable, identifiers: string[], message: string): Promise<void> {
  if (identifiers.length === 0) return;
  await db.query(
    `UPDATE stripe_ledger SET attempts = attempts + 1, last_attempt_error = $2, updated_at = now()
     WHERE pending_identifier = ANY($1::text[])`,
    [identifiers, message.slice(0, 1000)],
  );
}

/**
 * Stripe refused these sends (a 4xx other than 429): Stripe's message goes on the row, the send is dropped and its
 * rounding undone, and the row waits until its target changes or an operator resets it.
 */
export async function refuseSends(
  db: Db,
  sends: PendingSend[],
  error: { code: string; message: string },
  at: Date,
): Promise<void> {
  if (sends.length === 0) return;
  await db.transaction(async (tx) => {
    await tx.query(
      `UPDATE stripe_ledger SET error_code = $2, error_message = $3, error_at = $4,
         pending_identifier = NULL, pending_units = NULL, pending_target = NULL, pending_scale = NULL,
         pending_timestamp = NULL, pending_since = NULL, attempts = 0, last_attempt_error = NULL, updated_at = now()
       WHERE pending_identifier = ANY($1::text[])`,
      [sends.map((s) => s.pending.identifier), error.code.slice(0, 200), error.message.slice(0, 2000), at],
    );
    // One change per (customer, meter, period): a v2 batch may hold several hours of one period.
    const reverts = new Map<string, { customer: string; meter: string; period: Date; delta: Dec }>();
    for (const s of sends) {
      if (s.row.kind !== "hour") continue;
      const key = `${pairKey(s.row.customer, s.row.meter)}\u0000${s.row.period.toISOString()}`;
      const entry = reverts.get(key) ?? {
        customer: s.row.customer,
        meter: s.row.meter,
        period: s.row.period,
        delta: new Dec(0),
      };
      entry.delta = entry.delta.plus(carryRevert(s.row, s.pending));
      reverts.set(key, entry);
    }
    if (reverts.size > 0) {
      const list = [...reverts.values()];
      await tx.query(
        `INSERT INTO stripe_carry (customer_id, meter, period, carry)
         SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::numeric[])
         ON CONFLICT (customer_id, meter, period) DO UPDATE SET carry = stripe_carry.carry + EXCLUDED.carry`,
        [
          list.map((r) => r.customer),
          list.map((r) => r.meter),
          list.map((r) => r.period),
          list.map((r) => r.delta.toFixed()),
        ],
      );
    }
  });
}

/** Clears errors (all, or one customer's and/or meter's) so the next run tries those rows again. */
export async function resetErrors(db: Queryable, filter: { customer?: string; meter?: string }): Promise<number> {
  const { rowCount } = await db.query(
    `UPDATE stripe_ledger SET error_code = NULL, error_message = NULL, error_at = NULL, updated_at = now()
     WHERE error_message IS NOT NULL AND ($1::text IS NULL OR customer_id = $1) AND ($2::text IS NULL OR meter = $2)`,
    [filter.customer ?? null, filter.meter ?? null],
  );
  return rowCount;
}
