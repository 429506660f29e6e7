// Webhooks: endpoints with a secret shown once, and delivery from a database outbox (rows written in the same
// transaction as the limit or credit alert they report), so nothing is lost across restarts. The deliver-webhooks job runs under the job
// lock (one deliverer across processes), sends each due delivery signed, logs every attempt, and retries with
// exponential backoff and jitter until the delivery is 24 hours old.
import { randomBytes } from "node:crypto";
import { backoffMs } from "../backoff.js";
import type { Clock } from "../clock.js";
import type { Db, Queryable } from "../db/types.js";
import type { Logger } from "../logger.js";
import { privateTarget } from "./privateNetwork.js";
import { SIGNATURE_HEADER, sign } from "./signature.js";

const GIVE_UP_AFTER_MS = 24 * 3_600_000;
const MAX_BACKOFF_MS = 2 * 3_600_000;
const ATTEMPT_TIMEOUT_MS = 10_000;
const BATCH = 100;

interface WebhookEndpoint {
  id: string;
  url: string;
  secret: string;
  createdAt: Date;
}

export async function createEndpoint(db: Queryable, url: string): Promise<WebhookEndpoint> {
  const id = `whe_${randomBytes(9).toString("base64url")}`;
  const secret = `whsec_${randomBytes(32).toString("base64url")}`;
  const { rows } = await db.query<{ created_at: Date }>(
    "INSERT INTO webhook_endpoints (id, url, secret) VALUES ($1, $2, $3) RETURNING created_at",
    [id, url, secret],
  );
  return { id, url, secret, createdAt: (rows[0] as { created_at: Date }).created_at };
}

/**
 * Queues one event for every enabled endpoint, due at `at` (Tally's clock); call inside the transaction that
 * records what it reports.
 */
export async function enqueueEvent(tx: Queryable, eventId: string, body: string, at: Date): Promise<number> {
  const { rowCount } = await tx.query(
    `INSERT INTO webhook_deliveries (event_id, endpoint_id, body, next_attempt_at, created_at)
     SELECT $1, id, $2, $3, $3 FROM webhook_endpoints WHERE disabled_at IS NULL
     ON CONFLICT (event_id, endpoint_id) DO NOTHING`,
    [eventId, body, at],
  );
  return rowCount;
}

interface DeliverySummary {
  attempted: number;
  delivered: number;
  retrying: number;
  given_up: number;
}

interface DueRow {
  id: string;
  event_id: string;
  url: string;
  secret: string;
  body: string;
  attempts: number;
  created_at: Date;
}

export async function deliverDue(
  db: Db,
  clock: Clock,
  log: Logger,
  opts: { retryBaseMs: number; allowPrivate?: boolean },
): Promise<DeliverySummary> {
  const summary: DeliverySummary = { attempted: 0, delivered: 0, retrying: 0, given_up: 0 };
  const now = clock.now();
  // No transaction is held across HTTP calls: the job lock already makes this the only deliverer.
  const { rows } = await db.query<DueRow>(
    `SELECT d.id::text, d.event_id, e.url, e.secret, d.body, d.attempts, d.created_at
     FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
     WHERE d.status = 'pending' AND d.next_attempt_at <= $1
     ORDER BY d.next_attempt_at LIMIT ${BATCH}`,
    [now],
  );
  for (const row of rows) {
    summary.attempted += 1;
    const attempt = row.attempts + 1;
    const t0 = performance.now();
    let status: number | null = null;
    let error: string | null = null;
    try {
      // Again at every attempt: the name may resolve elsewhere now than at registration (DNS rebinding).
      const refusal = opts.allowPrivate ? undefined : await privateTarget(row.url, { unresolved: "refuse" });
      if (refusal) throw new Error(`refused: ${refusal} (TALLY_WEBHOOK_ALLOW_PRIVATE)`);
      const res = await fetch(row.url, {
        method: "POST",
        headers: {
          "Content-Type": "application/json",
          "User-Agent": "Tally-Webhooks/1",
          "Tally-Event-Id": row.event_id,
          [SIGNATURE_HEADER]: sign(row.secret, row.body, Math.floor(clock.now().getTime() / 1000)),
        },
        body: row.body,
        signal: AbortSignal.timeout(ATTEMPT_TIMEOUT_MS),
        redirect: "manual",
      });
      status = res.status;
      await res.arrayBuffer().catch(() => undefined);
      if (status < 200 || status >= 300) error = `HTTP ${status}`;
    } catch (err) {
      error =
        (err as Error).name === "TimeoutError" ? `no answer within ${ATTEMPT_TIMEOUT_MS} ms` : (err as Error).message;
    }
    const durationMs = Math.round(performance.now() - t0);
    const ok = error === null;
    const expired = clock.now().getTime() - row.created_at.getTime() >= GIVE_UP_AFTER_MS;
    const next = new Date(
      clock.now().getTime() + backoffMs(attempt - 1, { baseMs: opts.retryBaseMs, capMs: MAX_BACKOFF_MS, jitter: 0.2 }),
    );
    const outcome = ok ? "delivered" : expired ? "failed" : "pending";
    await db.transaction(async (tx) => {
      await tx.query(
        "INSERT INTO webhook_attempts (delivery_id, attempt, status_code, error, duration_ms) VALUES ($1, $2, $3, $4, $5)",
        [row.id, attempt, status, error, durationMs],
      );
      await tx.query(
        `UPDATE webhook_deliveries SET attempts = $2, status = $3, last_error = $4, next_attempt_at = $5,
           delivered_at = CASE WHEN $3 = 'delivered' THEN $6::timestamptz END
         WHERE id = $1`,
        [row.id, attempt, outcome, error, next, clock.now()],
      );
    });
    log.info(
      { event_id: row.event_id, url: row.url, attempt, status, error, duration_ms: durationMs, outcome },
      "webhook delivery attempt",
    );
    if (ok) summary.delivered += 1;
    else if (expired) summary.given_up += 1;
    else summary.retrying += 1;
  }
  return summary;
}

/** Deletes finished deliveries (delivered or given up) created before `before`, with their attempt log. */
export async function pruneDeliveries(db: Db, before: Date): Promise<number> {
  return db.transaction(async (tx) => {
    const done = "status <> 'pending' AND created_at < $1";
    await tx.query(
      `DELETE FROM webhook_attempts WHERE delivery_id IN (SELECT id FROM webhook_deliveries WHERE ${done})`,
      [before],
    );
    return (await tx.query(`DELETE FROM webhook_deliveries WHERE ${done}`, [before])).rowCount;
  });
}
