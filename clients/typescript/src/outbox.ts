// The buffer between `track` and Tally: events wait here, serialized, until a batch is due (count, bytes or age),
// go out on at most `concurrency` requests at a time, and leave only when Tally acknowledged them (202, duplicates
// included) or refused them (reported). Memory is bounded by `maxBufferedEvents`; past it `track` waits or fails.

import { encodeBatch, type Outcome, postBatch, retryDelay } from "./delivery.js";
import { BufferFullError, ClientClosedError, type EventProblem, type Rejection, type TrackedEvent } from "./errors.js";

interface OutboxOptions {
  url: string;
  apiKey: string;
  maxBatchEvents: number;
  maxBatchBytes: number;
  flushIntervalMs: number;
  gzipAboveBytes: number;
  maxBufferedEvents: number;
  onBufferFull: "wait" | "error";
  concurrency: number;
  requestTimeoutMs: number;
  retryBaseMs: number;
  retryMaxMs: number;
  onRejected: (rejections: Rejection[]) => void;
  onRetry: (info: { reason: string; events: number; attempt: number; delayMs: number }) => void;
}

/** What a service can log: counts of events since the client started, and `buffered` now. */
export interface ClientMetrics {
  /** Acknowledged by Tally (202), duplicates included. */
  sent: number;
  /** Of `sent`: answered as already stored (a retry whose first answer was lost, or an id sent twice). */
  duplicates: number;
  /** Sent again after a failed attempt (one event retried three times counts three). */
  retried: number;
  /** Refused by Tally and reported to `onRejected`; never stored. */
  rejected: number;
  /** Held now: waiting for a batch or in flight. */
  buffered: number;
  /** Requests answered 202. */
  batches: number;
}

interface Item {
  seq: number;
  line: string;
  at: number;
}

interface Barrier {
  seq: number;
  remaining: number;
  done: () => void;
}

/**
 * Waits `ms` before a retry. `hurry` (flush or close asked for delivery) cuts a backoff short — but never below
 * `floorMs`, the Retry-After Tally asked for; giving up (close's deadline) ends it at once.
 */
function retryWait(ms: number, floorMs: number, signal: AbortSignal, hurry: Set<() => void>): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const started = Date.now();
    let timer = setTimeout(done, ms);
    const hurried = () => {
      clearTimeout(timer);
      timer = setTimeout(done, Math.max(0, Math.min(ms, floorMs) - (Date.now() - started)));
    };
    function done() {
      clearTimeout(timer);
      hurry.delete(hurried);
      signal.removeEventListener("abort", done);
      resolve();
    }
    hurry.add(hurried);
    signal.addEventListener("abort", done);
  });
}

export class Outbox {
  readonly #o: OutboxOptions;
  #queue: Item[] = [];
  #queueBytes = 0;
  #seq = 0;
  #forceUpTo = -1;
  #active = 0;
  readonly #inFlight = new Set<Item[]>();
  readonly #waiting: { item: Item; resolve: () => void; reject: (err: Error) => void }[] = [];
  readonly #barriers: Barrier[] = [];
  #timer: NodeJS.Timeout | undefined;
  #timerAt = 0;
  readonly #giveUp = new AbortController();
  /** Retry waits in progress: flush() shortens them (see retryWait). */
  readonly #hurry = new Set<() => void>();
  /** Counts flush() calls: a batch retried across one starts its backoff again from retryBaseMs. */
  #flushes = 0;
  #idle: (() => void) | undefined;
  /** maxBatchEvents, or less after Tally answered 413. */
  #maxEvents: number;
  readonly #m: ClientMetrics = { sent: 0, duplicates: 0, retried: 0, rejected: 0, buffered: 0, batches: 0 };

  constructor(opts: OutboxOptions) {
    this.#o = opts;
    this.#maxEvents = opts.maxBatchEvents;
  }

  metrics(): ClientMetrics {
    return { ...this.#m };
  }

  /** Buffers one serialized event; resolves at once while there is room, else when there is (or rejects). */
  add(line: string): Promise<void> | undefined {
    const item: Item = { seq: this.#seq++, line, at: Date.now() };
    if (this.#m.buffered < this.#o.maxBufferedEvents) {
      this.#enqueue(item);
      return undefined;
    }
    if (this.#o.onBufferFull === "error") {
      return Promise.reject(new BufferFullError(this.#fullMessage('onBufferFull is "error"')));
    }
    // Backpressure works when callers await track; callers that do not would pile up here without bound.
    if (this.#waiting.length >= this.#o.maxBufferedEvents) {
      return Promise.reject(new BufferFullError(this.#fullMessage("as many track calls are already waiting")));
    }
    return new Promise((resolve, reject) => this.#waiting.push({ item, resolve, reject }));
  }

  #fullMessage(why: string): string {
    return `Tally client buffer full: ${this.#m.buffered} events not yet acknowledged (maxBufferedEvents ${this.#o.maxBufferedEvents}), and ${why}`;
  }

  #enqueue(item: Item): void {
    this.#m.buffered += 1;
    this.#queue.push(item);
    this.#queueBytes += item.line.length + 1;
    this.#pump();
  }

  /** Resolves when every event buffered before the call has left the buffer (acknowledged or refused). */
  drain(): Promise<void> {
    const held = this.#m.buffered + this.#waiting.length;
    if (held === 0) return Promise.resolve();
    return new Promise((done) => {
      const seq = this.#seq - 1;
      this.#barriers.push({ seq, remaining: held, done });
      this.#forceUpTo = Math.max(this.#forceUpTo, seq);
      this.#flushes += 1;
      for (const hurried of [...this.#hurry]) hurried();
      this.#pump();
    });
  }

  /** The events not yet acknowledged, oldest first (for a DeliveryError), with those track() holds back. */
  pending(): TrackedEvent[] {
    const items = [...this.#inFlight].flat().concat(
      this.#queue,
      this.#waiting.map((w) => w.item),
    );
    return items.sort((a, b) => a.seq - b.seq).map((i) => JSON.parse(i.line) as TrackedEvent);
  }

  /** close()'s deadline: abort requests and retry waits; the events still buffered are returned, not delivered. */
  async abandon(): Promise<TrackedEvent[]> {
    this.#giveUp.abort();
    clearTimeout(this.#timer);
    if (this.#active > 0) await new Promise<void>((r) => (this.#idle = r));
    this.#idle = undefined;
    return this.pending();
  }

  /** close(): track() calls still waiting for room fail (their events were never buffered). */
  refuseWaiting(): void {
    for (const w of this.#waiting.splice(0)) {
      w.reject(new ClientClosedError("close() while track() waited for room: the event was not buffered"));
    }
  }

  get abandoned(): boolean {
    return this.#giveUp.signal.aborted;
  }

  #due(now: number): boolean {
    const first = this.#queue[0];
    if (!first) return false;
    return (
      first.seq <= this.#forceUpTo ||
      this.#queue.length >= this.#maxEvents ||
      this.#queueBytes >= this.#o.maxBatchBytes ||
      now - first.at >= this.#o.flushIntervalMs
    );
  }

  #pump(): void {
    if (this.abandoned) return;
    const now = Date.now();
    while (this.#active < this.#o.concurrency && this.#due(now)) {
      const batch = this.#take();
      this.#active += 1;
      this.#inFlight.add(batch);
      this.#deliver(batch).finally(() => {
        if (batch.length === 0) this.#inFlight.delete(batch);
        this.#active -= 1;
        if (this.#active === 0) this.#idle?.();
        this.#pump();
      });
    }
    this.#schedule(now);
  }

  /** A timer for the oldest event's age limit, while events wait and no batch is due sooner. */
  #schedule(now: number): void {
    const first = this.#queue[0];
    if (!first || this.#active >= this.#o.concurrency || this.#due(now)) return;
    const at = first.at + this.#o.flushIntervalMs;
    if (this.#timer && this.#timerAt <= at) return;
    clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(
      () => {
        this.#timer = undefined;
        this.#timerAt = 0;
        this.#pump();
      },
      Math.max(0, at - now),
    );
  }

  #take(): Item[] {
    let n = 0;
    let bytes = 0;
    while (n < this.#queue.length && n < this.#maxEvents) {
      const size = (this.#queue[n] as Item).line.length + 1;
      if (n > 0 && bytes + size > this.#o.maxBatchBytes) break;
      bytes += size;
      n += 1;
    }
    this.#queueBytes -= bytes;
    return this.#queue.splice(0, n);
  }

  /**
   * Sends one batch until nothing of it is left: acknowledged, refused, or (past close's deadline) abandoned — then
   * `batch` still holds what was not acknowledged, for `pending()`.
   */
  async #deliver(batch: Item[]): Promise<void> {
    let attempt = 0;
    let flushes = this.#flushes;
    while (batch.length > 0 && !this.abandoned) {
      const outcome = await this.#post(batch);
      if (outcome.kind === "delivered") {
        this.#m.sent += batch.length;
        this.#m.duplicates += outcome.duplicates;
        this.#m.batches += 1;
        this.#settle(batch);
        batch.length = 0;
      } else if (outcome.kind === "refused-some") {
        const kept: Item[] = [];
        const refused: { item: Item; problems: EventProblem[] }[] = [];
        batch.forEach((item, i) => {
          const problems = outcome.refused.get(i);
          if (problems) refused.push({ item, problems });
          else kept.push(item);
        });
        this.#refuse(refused, outcome.status, outcome.code);
        this.#m.retried += kept.length;
        batch.splice(0, batch.length, ...kept);
      } else if (outcome.kind === "too-large" && batch.length > 1) {
        // Tally takes fewer events per request than configured: halve this batch (the rest waits at the head of the
        // queue, already due) and every later one.
        const half = Math.ceil(batch.length / 2);
        const rest = batch.splice(half);
        this.#maxEvents = Math.min(this.#maxEvents, half);
        this.#queue.unshift(...rest);
        for (const item of rest) this.#queueBytes += item.line.length + 1;
        this.#forceUpTo = Math.max(this.#forceUpTo, (rest[rest.length - 1] as Item).seq);
        this.#m.retried += batch.length;
      } else if (outcome.kind === "too-large" || outcome.kind === "refused-all") {
        const problems = [{ field: "", message: outcome.detail }];
        this.#refuse(
          batch.map((item) => ({ item, problems })),
          outcome.status,
          outcome.code,
        );
        batch.length = 0;
      } else {
        // A flush asks for delivery now: the backoff a long outage built up starts again from its base.
        if (flushes !== this.#flushes) [attempt, flushes] = [0, this.#flushes];
        attempt += 1;
        const delayMs = retryDelay(attempt, outcome.retryAfterMs, this.#o.retryBaseMs, this.#o.retryMaxMs);
        this.#o.onRetry({ reason: outcome.reason, events: batch.length, attempt, delayMs });
        await retryWait(delayMs, outcome.retryAfterMs ?? 0, this.#giveUp.signal, this.#hurry);
        if (!this.abandoned) this.#m.retried += batch.length;
      }
    }
  }

  async #post(items: Item[]): Promise<Outcome> {
    let bytes = 0;
    const lines = items.map((i) => {
      bytes += i.line.length + 1;
      return i.line;
    });
    const body = await encodeBatch(lines, bytes, this.#o.gzipAboveBytes);
    const opts = { url: this.#o.url, apiKey: this.#o.apiKey, timeoutMs: this.#o.requestTimeoutMs };
    return postBatch({ ...opts, signal: this.#giveUp.signal }, body, items.length);
  }

  #refuse(refused: { item: Item; problems: EventProblem[] }[], status: number, code: string): void {
    if (refused.length === 0) return;
    this.#m.rejected += refused.length;
    this.#settle(refused.map((r) => r.item));
    const rejections = refused.map((r) => ({
      event: JSON.parse(r.item.line) as TrackedEvent,
      status,
      code,
      problems: r.problems,
    }));
    try {
      this.#o.onRejected(rejections);
    } catch {
      // A throwing callback must not stop delivery of the other events.
    }
  }

  /** Events leave the buffer: flush barriers count down, waiting `track` calls get their room. */
  #settle(items: Item[]): void {
    this.#m.buffered -= items.length;
    for (let b = this.#barriers.length - 1; b >= 0; b--) {
      const barrier = this.#barriers[b] as Barrier;
      for (const item of items) if (item.seq <= barrier.seq) barrier.remaining -= 1;
      if (barrier.remaining <= 0) {
        this.#barriers.splice(b, 1);
        barrier.done();
      }
    }
    while (this.#waiting.length > 0 && this.#m.buffered < this.#o.maxBufferedEvents) {
      const w = this.#waiting.shift() as { item: Item; resolve: () => void };
      this.#enqueue(w.item);
      w.resolve();
    }
  }
}
