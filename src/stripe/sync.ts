// The sync-stripe job: mappings and marks become ledger targets, pending sends from earlier runs go again with the
// same identifiers, then new sends are planned (written as pending first) and delivered — serialized per
// (customer, meter) on v1, in batches of up to 100 on the v2 stream — within a concurrency cap and a rate limit.
import { setTimeout as delay } from "node:timers/promises";
import { backoffMs } from "../backoff.js";
import type { Clock } from "../clock.js";
import { type Config, stripeMaxRps } from "../config.js";
import type { Db } from "../db/types.js";
import type { Logger } from "../logger.js";
import type { Dec } from "../pricing/money.js";
import { createStripeClient } from "./client.js";
import { type PairChanges, syncPairs } from "./pairs.js";
import { CustomerPeriods } from "./periods.js";
import { RateLimiter } from "./rateLimit.js";
import { isSendable, type Planned, planPair, sendTimestamp } from "./rules.js";
import { createMeterEventSender } from "./sender.js";
import { type LedgerState, ledgerState, readSyncState, saveRecentRequests } from "./status.js";
import { targetsFromMarks } from "./targets.js";
import type { MeterEventSend, MeterEventSender, MeterSendOutcome, PendingSend, WorkRow } from "./types.js";
import { confirmSends, loadCarries, loadWork, noteAttempt, pairKey, refuseSends, writePlans } from "./work.js";

/** Waits `ms`, or less when the run is aborted (shutdown). */
const sleep = (ms: number, signal?: AbortSignal) => delay(ms, undefined, { signal }).catch(() => {});

/** Tries of one request while Stripe answers 429 (then the run stops and the next one resumes). */
const RATE_LIMIT_TRIES = 4;
const MAX_LISTED = 20;
/** Consecutive 5xx/timeouts that end a run early. */
const UNANSWERED_STOP = 5;
const SYNC_OFF = "Stripe sync is off: STRIPE_SECRET_KEY is not set";

interface Failure {
  customer: string;
  meter: string;
  bucket: string;
  /** Stripe's HTTP status; null when Tally itself could not send the value (more than 15 digits). */
  status: number | null;
  code: string;
  message: string;
}

type SyncSummary =
  | { enabled: false; message: string }
  | ({
      enabled: true;
      api: "v1" | "v2";
      as_of: string;
      pairs: PairChanges;
      marked_hours: number;
      targets_updated: number;
      /** Events Stripe accepted in this run. */
      sent: number;
      /** already_delivered + nothing_to_send. */
      skipped: number;
      /** Resends Stripe already had ("An event already exists with identifier"): counted as delivered. */
      already_delivered: number;
      /** Changes that round to no whole unit, or running values Stripe already has. */
      nothing_to_send: number;
      /** Sends Stripe refused in this run (4xx), with its reasons; those rows wait in error. */
      failed: number;
      failures: Failure[];
      /** Sends that met a 5xx or a timeout in this run: still pending, retried with the same identifier. */
      retry_later: number;
      /** Rows with work whose customer or meter lost its Stripe mapping. */
      unmapped: number;
      requests: number;
      rate_limited: boolean;
      /** Why the run stopped before delivering everything, if it did. */
      stopped: string | null;
      /** Where the run's time went: mappings and backfills, marks → targets, resends, planning, deliveries. */
      timings_ms: { pairs: number; marks: number; resend: number; plan: number; deliver: number };
    } & LedgerState);

interface SyncOptions {
  db: Db;
  clock: Clock;
  log: Logger;
  sender: MeterEventSender | undefined;
  concurrency: number;
  backoffMs: number;
  /** The sender's limiter: seeded from, and saved to, the database around each run. */
  limiter?: RateLimiter | undefined;
  signal?: AbortSignal | undefined;
}

const toEvent = (s: PendingSend): MeterEventSend => ({
  identifier: s.pending.identifier,
  eventName: s.row.eventName,
  stripeCustomerId: s.row.stripeCustomerId,
  value: s.pending.units,
  timestamp: s.pending.timestamp,
});

/** Runs the requests of one sync run and keeps its tally. */
class Delivery {
  sent = 0;
  alreadyDelivered = 0;
  failed = 0;
  retryLater = 0;
  #unanswered = 0;
  rateLimited = false;
  failures: Failure[] = [];
  stop: string | null = null;

  constructor(private readonly o: SyncOptions & { sender: MeterEventSender }) {}

  stopped(): boolean {
    if (this.o.signal?.aborted) this.stop ??= "shutting down";
    return this.stop !== null;
  }

  async #request(events: MeterEventSend[]): Promise<MeterSendOutcome> {
    for (let attempt = 0; ; attempt++) {
      const outcome = await this.o.sender.send(events);
      if (outcome.kind !== "rate_limited" || attempt + 1 >= RATE_LIMIT_TRIES || this.stopped()) return outcome;
      await sleep(backoffMs(attempt, { baseMs: this.o.backoffMs, jitter: 0.5 }), this.o.signal);
    }
  }

  /** Sends one request's worth; false when this pair (v1) or the run (v2) should go no further now. */
  async #handle(sends: PendingSend[]): Promise<boolean> {
    const ids = sends.map((s) => s.pending.identifier);
    const outcome = await this.#request(sends.map(toEvent));
    const at = this.o.clock.now();
    this.#unanswered = outcome.kind === "retry_later" ? this.#unanswered + 1 : 0;
    switch (outcome.kind) {
      case "delivered":
        await confirmSends(this.o.db, ids, at);
        this.sent += sends.length;
        return true;
      case "duplicate":
        await confirmSends(this.o.db, ids, at);
        this.alreadyDelivered += sends.length;
        return true;
      case "rejected":
        await refuseSends(this.o.db, sends, outcome, at);
        this.failed += sends.length;
        for (const s of sends) {
          if (this.failures.length >= MAX_LISTED) break;
          this.failures.push({
            customer: s.row.customer,
            meter: s.row.meter,
            bucket: s.row.bucket.toISOString(),
            status: outcome.status,
            code: outcome.code,
            message: outcome.message,
          });
        }
        this.o.log.warn(
          { status: outcome.status, code: outcome.code, message: outcome.message, events: sends.length },
          "Stripe refused meter events",
        );
        return true;
      case "retry_later":
        await noteAttempt(this.o.db, ids, outcome.message);
        this.retryLater += sends.length;
        // During an outage, trying every pair once per run would only add load: a few in a row end the run.
        if (this.#unanswered >= UNANSWERED_STOP) {
          this.stop ??= `Stripe did not answer ${UNANSWERED_STOP} requests in a row (5xx or timeouts); the next run retries`;
        }
        return false;
      case "rate_limited":
        await noteAttempt(this.o.db, ids, `429: ${outcome.message}`);
        this.rateLimited = true;
        this.stop ??= `rate limited by Stripe after ${RATE_LIMIT_TRIES} tries; the next run resumes`;
        return false;
      case "auth_failed":
        await noteAttempt(this.o.db, ids, outcome.message);
        this.stop ??= `Stripe refused the API key: ${outcome.message}`;
        return false;
    }
  }

  async deliver(sends: PendingSend[]): Promise<void> {
    if (sends.length === 0 || this.stopped()) return;
    const v1 = this.o.sender.api === "v1";
    const queue: PendingSend[][] = [];
    if (v1) {
      // One request at a time per (customer, meter): Stripe allows one concurrent call per customer per meter.
      queue.push(...groupBy(sends, (s) => pairKey(s.row.customer, s.row.meter)).values());
    } else {
      for (let i = 0; i < sends.length; i += this.o.sender.maxBatch)
        queue.push(sends.slice(i, i + this.o.sender.maxBatch));
    }
    const worker = async () => {
      for (let job = queue.shift(); job && !this.stopped(); job = queue.shift()) {
        if (!v1) {
          if (!(await this.#handle(job))) this.stop ??= "Stripe did not answer (5xx or timeout); the next run retries";
          continue;
        }
        for (const send of job) {
          if (this.stopped() || !(await this.#handle([send]))) break;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.o.concurrency, queue.length) }, worker));
  }
}

function groupBy<T>(items: T[], keyOf: (item: T) => string): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const item of items) {
    const key = keyOf(item);
    const list = out.get(key);
    if (list) list.push(item);
    else out.set(key, [item]);
  }
  return out;
}

async function syncStripe(o: SyncOptions): Promise<SyncSummary> {
  const { sender } = o;
  if (!sender) return { enabled: false, message: SYNC_OFF };
  const { installId, recentRequests } = await readSyncState(o.db);
  // Another process may have run a moment ago: its last second counts against Stripe's limit too.
  o.limiter?.seed(recentRequests);
  try {
    return await run(o, sender, installId);
  } finally {
    // Whatever happened, the next run (in this process or another) learns about this run's last second.
    if (o.limiter) await saveRecentRequests(o.db, o.limiter.recent()).catch(() => {});
  }
}

async function run(o: SyncOptions, sender: MeterEventSender, install: string): Promise<SyncSummary> {
  const requestsBefore = sender.requests;
  const now = o.clock.now();
  const timings_ms = { pairs: 0, marks: 0, resend: 0, plan: 0, deliver: 0 };
  let mark = performance.now();
  const lap = (phase: keyof typeof timings_ms) => {
    const t = performance.now();
    timings_ms[phase] += Math.round(t - mark);
    mark = t;
  };
  // Every mapped customer's billing calendar, once per run: targets belong to the customer's own periods.
  const periods = await CustomerPeriods.load(o.db);
  const pairs = await syncPairs(o.db, now, periods);
  lap("pairs");
  const marks = await targetsFromMarks(o.db, now, periods);
  lap("marks");
  const delivery = new Delivery({ ...o, sender });

  // Sends written by an earlier run go first, unchanged: same identifier, same units.
  const earlier = await loadWork(o.db, "pending");
  await delivery.deliver(
    earlier.rows
      .filter((r) => r.pending && isSendable(r.pending.timestamp, now))
      .map((r) => ({ row: r, pending: r.pending as NonNullable<WorkRow["pending"]> })),
  );
  lap("resend");

  let nothingToSend = 0;
  let unmapped = earlier.unmapped;
  if (!delivery.stopped()) {
    const plan = await planSends(o.db, delivery, install, now);
    ({ nothingToSend, unmapped } = plan);
    lap("plan");
    await delivery.deliver(plan.sends);
  }

  lap("deliver");
  const state = await ledgerState(o.db, now);
  if (delivery.stop) o.log.warn({ reason: delivery.stop }, "Stripe sync stopped early");
  if (state.stale > 0)
    o.log.warn(
      { stale: state.stale, sample: state.stale_buckets.slice(0, 3) },
      "usage older than Stripe's 35-day window was never sent",
    );
  return {
    enabled: true,
    api: sender.api,
    as_of: now.toISOString(),
    pairs,
    ...marks,
    sent: delivery.sent,
    skipped: delivery.alreadyDelivered + nothingToSend,
    already_delivered: delivery.alreadyDelivered,
    nothing_to_send: nothingToSend,
    failed: delivery.failed,
    failures: delivery.failures,
    retry_later: delivery.retryLater,
    unmapped,
    requests: sender.requests - requestsBefore,
    rate_limited: delivery.rateLimited,
    stopped: delivery.stop,
    timings_ms,
    ...state,
  };
}

/**
 * Plans the next send of every row with work (each pair's rows together, for its carries), writes the plans, and
 * returns the sends the ledger now holds as pending; values too large for Stripe are counted as failed.
 */
async function planSends(
  db: Db,
  delivery: Delivery,
  install: string,
  now: Date,
): Promise<{ sends: PendingSend[]; nothingToSend: number; unmapped: number }> {
  const work = await loadWork(db);
  const open = work.rows.filter((r) => !r.pending && isSendable(sendTimestamp(r, now), now));
  const carries = await loadCarries(db, open);
  const planned: Planned[] = [];
  const carryRows: { customer: string; meter: string; period: Date; carry: string }[] = [];
  for (const [key, rows] of groupBy(open, (r) => pairKey(r.customer, r.meter))) {
    const byPeriod = carries.get(key) ?? new Map<string, Dec>();
    const before = new Map(byPeriod);
    planned.push(...planPair(rows, byPeriod, { install, now }));
    const first = rows[0] as WorkRow;
    for (const [period, carry] of byPeriod) {
      if (before.get(period)?.eq(carry)) continue;
      carryRows.push({
        customer: first.customer,
        meter: first.meter,
        period: new Date(period),
        carry: carry.toFixed(),
      });
    }
  }
  const written = await writePlans(db, planned, carryRows, now);
  for (const p of planned) {
    if (p.kind !== "too_large") continue;
    delivery.failed += 1;
    if (delivery.failures.length < MAX_LISTED) {
      delivery.failures.push({
        customer: p.row.customer,
        meter: p.row.meter,
        bucket: p.row.bucket.toISOString(),
        status: null,
        code: "value_too_large",
        message: `${p.units} units have more than the 15 significant digits Stripe accepts; lower stripe_scale`,
      });
    }
  }
  return {
    sends: planned.flatMap((p) =>
      p.kind === "send" && written.has(p.pending.identifier)
        ? [{ row: { ...p.row, seq: p.row.seq + 1 }, pending: p.pending }]
        : [],
    ),
    nothingToSend: planned.filter((p) => p.kind === "skip").length,
    unmapped: work.unmapped,
  };
}

interface StripeSync {
  readonly enabled: boolean;
  run(): Promise<SyncSummary>;
}

/** The job's engine, from configuration: the Stripe client (client.ts), or off. */
export function createStripeSync(d: {
  db: Db;
  clock: Clock;
  config: Config;
  log: Logger;
  signal?: AbortSignal | undefined;
  sender?: MeterEventSender;
}): StripeSync {
  const { config } = d;
  const maxRps = stripeMaxRps(config);
  const limiter = new RateLimiter(maxRps);
  const stripe = d.sender ? undefined : createStripeClient(config);
  const sender =
    d.sender ??
    (stripe
      ? createMeterEventSender({ stripe, api: config.TALLY_STRIPE_METER_API, limiter, clock: d.clock })
      : undefined);
  if (sender) {
    d.log.info(
      {
        api: sender.api,
        max_rps: maxRps,
        concurrency: config.TALLY_STRIPE_CONCURRENCY,
        schedule: config.TALLY_CRON_STRIPE,
      },
      "Stripe sync is on",
    );
  } else {
    d.log.info(SYNC_OFF);
  }
  return {
    enabled: sender !== undefined,
    run: () =>
      syncStripe({
        db: d.db,
        clock: d.clock,
        log: d.log,
        sender,
        concurrency: config.TALLY_STRIPE_CONCURRENCY,
        backoffMs: config.TALLY_STRIPE_BACKOFF_MS,
        limiter: d.sender ? undefined : limiter,
        signal: d.signal,
      }),
  };
}
