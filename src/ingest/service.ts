// Ingest: a JSON or NDJSON batch in, validated whole, written with COPY in one transaction, 202 after commit.
// NDJSON is streamed: lines are parsed, validated and written in bounded chunks, so memory does not grow with
// the body. On the first bad line writing stops and the transaction is rolled back; the rest of the body is
// still read and validated (without writing), so every bad line is reported.

import type { MeterCache } from "../catalog/meterCache.js";
import { markTouchedHours } from "../changes/hours.js";
import type { Clock } from "../clock.js";
import { inBackground } from "../db/priority.js";
import type { Db, Queryable } from "../db/types.js";
import { DimensionResolver, type Resolved } from "../dimensions/resolver.js";
import { AppError, payloadTooLarge } from "../errors.js";
import type { Logger } from "../logger.js";
import type { Metrics } from "../metrics.js";
import { ascending, customersInOrder, distinctInKeyOrder } from "./batch.js";
import { bodyFormat, decodedStream, type IngestBody, limited, lines, readAll } from "./body.js";
import { type DistinctBatch, DistinctValues } from "./distinct.js";
import { NdjsonReader } from "./ndjson.js";
import { checkEvent, ErrorList, type PairDelta, PairTracker } from "./outcome.js";
import { maintainKeys } from "./rotate.js";
import { KnownCustomers, writeBatch, writeChunk } from "./store.js";
import { EventChecker, type ValidationContext, type ValidEvent } from "./validate.js";

export type { PairDelta };

interface IngestLimits {
  jsonMaxBytes: number;
  jsonMaxEvents: number;
  ndjsonMaxBytes: number;
  maxAgeMs: number;
  maxFutureMs: number;
  /** Distinct dimension combinations per (customer, meter, month): TALLY_MAX_DIMENSION_VALUES. */
  maxDimensionValues?: number;
  /** How long a key counts: TALLY_DEDUPE_WINDOW_DAYS (default 35 days). */
  dedupeWindowMs?: number;
  /** TALLY_DEDUPE_HOT_MAX_MB in bytes: the hot key table is rotated past it. */
  dedupeHotMaxBytes?: number;
}

interface IngestResult {
  accepted: number;
  duplicates: number;
}

/** What a committed batch touched: later capabilities (limits) react to it. */
export interface CommittedBatch {
  receivedAt: Date;
  accepted: number;
  /** Distinct customer → meter → delta in the batch (capped for huge NDJSON bodies; `truncated` then). */
  pairs: Map<string, Map<string, PairDelta>>;
  truncated: boolean;
}

const MAX_LINE_BYTES = 64 * 1024;
/** Events a process stores between looks at the hot key table's size (a burst rotates it before the daily job). */
const KEY_UPKEEP_EVERY = 250_000;
const RETRYABLE = new Set(["40P01", "40001"]);

class StopWriting extends Error {}

/** What an NDJSON body's chunks leave for after the commit. */
interface NdjsonWritten {
  resolved: Resolved[];
  customers: Set<string>;
  /** Each chunk's distinct values and whether they were written as gathered (no conflict); bounded. */
  distinct: [DistinctBatch, boolean][];
  distinctRows: number;
}

/** Rows of distinct values an NDJSON body remembers for after its commit (a cache: memory stays bounded). */
const MAX_REMEMBERED_DISTINCT = 150_000;

export class IngestService {
  readonly #accepted;
  readonly #duplicates;
  readonly #rejected;
  readonly #batchSize;
  readonly #latency;
  readonly #conflicts;
  readonly #known = new KnownCustomers();
  readonly #listeners: ((batch: CommittedBatch) => void)[] = [];
  readonly dimensions: DimensionResolver;
  readonly #distinct = new DistinctValues();
  #storedSinceUpkeep = 0;
  #upkeep: Promise<unknown> | undefined;

  constructor(
    private readonly db: Db,
    private readonly meters: MeterCache,
    private readonly clock: Clock,
    private readonly limits: IngestLimits,
    private readonly log: Logger,
    metrics: Metrics,
  ) {
    this.dimensions = new DimensionResolver(limits.maxDimensionValues ?? 10_000);
    this.#accepted = metrics.counter("tally_events_accepted_total", "Events stored", []);
    this.#duplicates = metrics.counter(
      "tally_events_duplicate_total",
      "Events dropped as duplicates of a stored event",
      [],
    );
    this.#rejected = metrics.counter("tally_events_rejected_total", "Events in refused batches, by reason", ["reason"]);
    this.#batchSize = metrics.histogram(
      "tally_ingest_batch_events",
      "Events per ingest batch",
      ["format"],
      [1, 10, 100, 500, 1_000, 5_000, 10_000, 100_000, 1_000_000],
    );
    this.#latency = metrics.histogram(
      "tally_ingest_batch_duration_seconds",
      "Time from request to commit, per batch",
      ["format", "outcome"],
      [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60, 300],
    );
    this.#conflicts = metrics.counter(
      "tally_ingest_conflicts_total",
      "Batches (NDJSON: chunks) that met a stored key and were written again with ON CONFLICT",
      ["format"],
    );
  }

  onCommitted(listener: (batch: CommittedBatch) => void): void {
    this.#listeners.push(listener);
  }

  async ingest(req: IngestBody, boundCustomer: string | null): Promise<IngestResult> {
    const format = bodyFormat(req);
    const started = process.hrtime.bigint();
    const elapsed = () => Number(process.hrtime.bigint() - started) / 1e9;
    try {
      const result = format === "json" ? await this.#json(req, boundCustomer) : await this.#ndjson(req, boundCustomer);
      this.#latency.observe({ format, outcome: "committed" }, elapsed());
      return result;
    } catch (err) {
      this.#latency.observe({ format, outcome: "refused" }, elapsed());
      throw err;
    }
  }

  #context(nowMs: number): Omit<ValidationContext, "aggregationOf"> {
    return {
      nowMs,
      maxAgeMs: this.limits.maxAgeMs,
      maxFutureMs: this.limits.maxFutureMs,
      uniquePropertyOf: (meter) => this.meters.uniquePropertyOf(meter),
    };
  }

  async #json(req: IngestBody, bound: string | null): Promise<IngestResult> {
    const receivedAt = this.clock.now();
    const body = await readAll(decodedStream(req), this.limits.jsonMaxBytes, "a JSON ingest body");
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString("utf8"));
    } catch (err) {
      throw new AppError(400, "malformed_json", `the body is not valid JSON: ${(err as Error).message}`);
    }
    const events = (parsed as { events?: unknown } | null)?.events;
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed) || !Array.isArray(events)) {
      throw new AppError(400, "invalid_events", 'the body must be an object {"events": [...]}', {
        errors: [{ field: "events", message: "must be an array of events" }],
      });
    }
    const extra = Object.keys(parsed).filter((k) => k !== "events");
    if (extra.length > 0) {
      throw new AppError(400, "invalid_events", `unknown field ${extra.join(", ")}`, {
        errors: extra.map((k) => ({ field: k, message: "unknown field" })),
      });
    }
    if (events.length > this.limits.jsonMaxEvents) {
      this.#rejected.inc({ reason: "too_large" }, events.length);
      throw payloadTooLarge(
        `${events.length} events in one JSON request; at most ${this.limits.jsonMaxEvents} are allowed (send bulk loads as application/x-ndjson)`,
      );
    }
    const keys = new Set<string>();
    for (const e of events) {
      const m = (e as { meter?: unknown } | null)?.meter;
      if (typeof m === "string") keys.add(m);
    }
    const checker = new EventChecker({
      ...this.#context(receivedAt.getTime()),
      aggregationOf: await this.meters.snapshot(keys),
    });
    const errors = new ErrorList();
    const valid: ValidEvent[] = [];
    for (let index = 0; index < events.length; index++) {
      const checked = checkEvent(events[index], index, checker, bound);
      if (Array.isArray(checked)) errors.add(checked);
      else valid.push(checked);
    }
    if (errors.count > 0) {
      this.#rejected.inc({ reason: "invalid" }, events.length);
      throw errors.toAppError(events.length);
    }
    let accepted = 0;
    if (valid.length > 0) {
      // Every event is valid, so valid[i] is events[i]: the index is its place in the batch.
      let resolved: Resolved | undefined;
      const written = await this.#withRetry(() =>
        writeBatch(
          this.db,
          valid,
          this.#known,
          receivedAt,
          {
            prepare: async (tx) => {
              resolved = await this.dimensions.resolve(tx, valid);
            },
            finish: async (tx) => {
              if (resolved) await this.dimensions.guard(tx, valid, resolved);
            },
          },
          this.#distinct,
          this.limits.dedupeWindowMs,
        ),
      );
      if (resolved) this.dimensions.committed(resolved);
      if (written.conflicted) this.#conflicts.inc({ format: "json" });
      accepted = written.stored;
    }
    return this.#committed("json", receivedAt, events.length, accepted, valid);
  }

  async #ndjson(req: IngestBody, bound: string | null): Promise<IngestResult> {
    const receivedAt = this.clock.now();
    const source = lines(limited(decodedStream(req), this.limits.ndjsonMaxBytes, "the NDJSON body"), MAX_LINE_BYTES);
    const reader = new NdjsonReader(source, this.#context(receivedAt.getTime()), this.meters, bound);
    const written: NdjsonWritten = { resolved: [], customers: new Set(), distinct: [], distinctRows: 0 };
    let accepted = 0;
    try {
      accepted = await this.db.transaction((tx) => this.#writeNdjson(tx, reader, receivedAt, written));
      for (const r of written.resolved) this.dimensions.committed(r);
      for (const [batch, asGathered] of written.distinct) this.#distinct.committed(batch, asGathered);
    } catch (err) {
      if (err instanceof AppError && err.status === 413) this.#rejected.inc({ reason: "too_large" }, reader.index);
      if (!(err instanceof StopWriting)) throw err;
      // Rolled back; read and validate the rest so every bad line is reported.
      await reader.drain();
      this.#rejected.inc({ reason: "invalid" }, reader.index);
      throw reader.errors.toAppError(reader.index);
    }
    this.#known.add(written.customers);
    return this.#committedPairs("ndjson", receivedAt, reader.index, accepted, reader.pairs);
  }

  /**
   * One transaction; inside it, bounded chunks, each written optimistically under a savepoint (see store.ts). Keys
   * claimed by an earlier chunk are visible to later ones, so dedupe spans the whole body. Stops writing (throws
   * StopWriting) at the first bad line.
   */
  async #writeNdjson(tx: Queryable, reader: NdjsonReader, receivedAt: Date, written: NdjsonWritten): Promise<number> {
    // Meter reloads during the stream: on the embedded engine through the open transaction (its one connection is
    // taken by it), on a server through the pool.
    const meterSource = this.db.backend === "embedded" ? tx : undefined;
    let stored = 0;
    while (!reader.ended) {
      const { first, events } = await reader.chunk(meterSource);
      if (reader.errors.count > 0) throw new StopWriting();
      if (events.length === 0) continue;
      // Dimension sets first, the guard after the write (both outside the chunk's savepoint: a conflict does not
      // undo them).
      const chunkResolved = await this.dimensions.resolve(tx, events);
      written.resolved.push(chunkResolved);
      const distinct = distinctInKeyOrder(events);
      const batch = await this.#distinct.prepare(tx, distinct, (e) => first + events.indexOf(e));
      const chunk = await writeChunk(
        tx,
        distinct,
        this.#known,
        receivedAt,
        { values: this.#distinct, batch },
        this.limits.dedupeWindowMs,
      );
      if (written.distinctRows + batch.rows.length > MAX_REMEMBERED_DISTINCT) batch.rows = [];
      written.distinctRows += batch.rows.length;
      written.distinct.push([batch, !chunk.conflicted]);
      await this.dimensions.guard(tx, events, chunkResolved, (i) => first + i);
      if (chunk.conflicted) this.#conflicts.inc({ format: "ndjson" });
      stored += chunk.stored;
      for (const c of customersInOrder(distinct)) {
        if (written.customers.size < KnownCustomers.MAX) written.customers.add(c);
      }
    }
    if (stored > 0) await markTouchedHours(tx, ascending(reader.hours));
    return stored;
  }

  async #withRetry<T>(fn: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (!code || !RETRYABLE.has(code) || attempt >= 3) throw err;
        this.log.warn({ code, attempt }, "ingest transaction retried");
      }
    }
  }

  #committed(format: string, receivedAt: Date, total: number, accepted: number, events: ValidEvent[]): IngestResult {
    const pairs = new PairTracker();
    for (const e of events) pairs.add(e.customer, e.meter, e.value);
    return this.#committedPairs(format, receivedAt, total, accepted, pairs);
  }

  /** After every KEY_UPKEEP_EVERY stored events, the key store's upkeep in the background (a rotation by size or
   * age, even where this process runs no jobs). */
  #keyUpkeep(stored: number): void {
    this.#storedSinceUpkeep += stored;
    if (this.#storedSinceUpkeep < KEY_UPKEEP_EVERY || this.#upkeep) return;
    this.#storedSinceUpkeep = 0;
    // Background work: on the embedded engine it yields the connection to requests as the jobs do.
    this.#upkeep = inBackground(() =>
      maintainKeys(this.db, this.clock.now(), {
        windowMs: this.limits.dedupeWindowMs,
        hotMaxBytes: this.limits.dedupeHotMaxBytes,
      }),
    )
      .catch((err: unknown) => this.log.warn({ err }, "dedupe key upkeep failed"))
      .finally(() => {
        this.#upkeep = undefined;
      });
  }

  #committedPairs(format: string, receivedAt: Date, total: number, accepted: number, pairs: PairTracker): IngestResult {
    this.#keyUpkeep(accepted);
    this.#accepted.inc(accepted);
    this.#duplicates.inc(total - accepted);
    this.#batchSize.observe({ format }, total);
    if (accepted > 0) {
      const batch: CommittedBatch = { receivedAt, accepted, pairs: pairs.map, truncated: pairs.truncated };
      for (const listener of this.#listeners) {
        try {
          listener(batch);
        } catch (err) {
          this.log.error({ err }, "ingest listener failed");
        }
      }
    }
    return { accepted, duplicates: total - accepted };
  }
}
