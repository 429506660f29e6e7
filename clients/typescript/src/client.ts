// TallyClient: `track` buffers usage events (ids and timestamps filled in), the outbox sends them in batches with
// retries, `flush`/`close` deliver what is buffered by a deadline, and typed reads wrap Tally's read endpoints.
import { ClientClosedError, DeliveryError, type Rejection, type TrackedEvent } from "./errors.js";
import { type ClientMetrics, Outbox } from "./outbox.js";
import { Reads } from "./reads.js";
import { uuid7 } from "./uuid7.js";

export interface TallyClientOptions {
  /** Tally's base URL, e.g. http://tally.internal:3000 */
  url: string;
  /** An API key with the `ingest` scope (and `read` for the reads). */
  apiKey: string;
  /** A batch is sent when it holds this many events (default 1,000; Tally takes up to 10,000 per JSON request). */
  maxBatchEvents?: number;
  /** …or this many bytes of serialized events (default 1 MiB). */
  maxBatchBytes?: number;
  /** …or when its oldest event has waited this long (default 1,000 ms). */
  flushIntervalMs?: number;
  /** Batches larger than this go as gzip-compressed NDJSON instead of JSON (default 256 KiB). */
  gzipAboveBytes?: number;
  /** Events held (waiting or in flight) before `track` waits or fails (default 100,000). */
  maxBufferedEvents?: number;
  /** When the buffer is full: "wait" (default; `await track(…)` resolves once there is room) or "error". */
  onBufferFull?: "wait" | "error";
  /** Requests in flight at once (default 4). */
  concurrency?: number;
  /** Per request (default 30,000 ms); a request without an answer by then is retried. */
  requestTimeoutMs?: number;
  /** First backoff ceiling (default 200 ms), doubled per attempt up to `retryMaxMs` (default 30,000 ms). */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** The default deadline of `flush()` and `close()` (default 20,000 ms). */
  flushTimeoutMs?: number;
  /** Events Tally refused (bad value, unknown meter, …): never stored. Default: logged with console.error. */
  onRejected?: (rejections: Rejection[]) => void;
  /** A failed attempt that will be retried (network error, 429, 503, …). Default: nothing (see `metrics().retried`). */
  onRetry?: (info: { reason: string; events: number; attempt: number; delayMs: number }) => void;
}

/** What `track` takes: `value` defaults to 1, `timestamp` to the time of the call, `id` to a new UUIDv7. */
export interface UsageEvent {
  customer: string;
  meter: string;
  value?: number | string;
  timestamp?: string | Date;
  id?: string;
  properties?: Record<string, string>;
}

const defaultOnRejected = (rejections: Rejection[]) => {
  for (const r of rejections) {
    const why = r.problems.map((p) => `${p.field}: ${p.message}`).join("; ");
    console.error(`Tally refused event ${r.event.id} of ${r.event.customer} (${r.status} ${r.code}): ${why}`);
  }
};

export class TallyClient extends Reads {
  readonly #outbox: Outbox;
  readonly #flushTimeoutMs: number;
  #closing: Promise<void> | undefined;

  constructor(opts: TallyClientOptions) {
    const url = opts.url.replace(/\/+$/, "");
    super(url, opts.apiKey, opts.requestTimeoutMs ?? 30_000);
    this.#flushTimeoutMs = opts.flushTimeoutMs ?? 20_000;
    this.#outbox = new Outbox({
      url,
      apiKey: opts.apiKey,
      maxBatchEvents: positive("maxBatchEvents", opts.maxBatchEvents ?? 1_000),
      maxBatchBytes: positive("maxBatchBytes", opts.maxBatchBytes ?? 1024 * 1024),
      flushIntervalMs: positive("flushIntervalMs", opts.flushIntervalMs ?? 1_000, true),
      gzipAboveBytes: positive("gzipAboveBytes", opts.gzipAboveBytes ?? 256 * 1024, true),
      maxBufferedEvents: positive("maxBufferedEvents", opts.maxBufferedEvents ?? 100_000),
      onBufferFull: opts.onBufferFull ?? "wait",
      concurrency: positive("concurrency", opts.concurrency ?? 4),
      requestTimeoutMs: positive("requestTimeoutMs", opts.requestTimeoutMs ?? 30_000),
      retryBaseMs: positive("retryBaseMs", opts.retryBaseMs ?? 200),
      retryMaxMs: positive("retryMaxMs", opts.retryMaxMs ?? 30_000),
      onRejected: opts.onRejected ?? defaultOnRejected,
      onRetry: opts.onRetry ?? (() => {}),
    });
  }

  /**
   * Buffers one event and resolves with its id once it is buffered (at once, unless the buffer is full: then when
   * there is room, or rejects with BufferFullError under `onBufferFull: "error"`). Resolving does not mean Tally
   * has it: `flush()` says that.
   */
  track(event: UsageEvent): Promise<string> {
    if (this.#closing)
      return Promise.reject(new ClientClosedError("track() after close(): the event was not buffered"));
    const tracked: TrackedEvent = {
      id: event.id ?? uuid7(),
      customer: event.customer,
      meter: event.meter,
      ...(event.value === undefined ? {} : { value: event.value }),
      // The time of use, not of delivery: an event that waited out an outage still counts in its own hour.
      timestamp:
        event.timestamp === undefined
          ? new Date().toISOString()
          : event.timestamp instanceof Date
            ? event.timestamp.toISOString()
            : event.timestamp,
      ...(event.properties === undefined ? {} : { properties: event.properties }),
    };
    const waiting = this.#outbox.add(JSON.stringify(tracked));
    return waiting ? waiting.then(() => tracked.id) : Promise.resolve(tracked.id);
  }

  /**
   * Sends everything buffered now and resolves when Tally acknowledged (or refused) all of it. Past `timeoutMs`
   * (default flushTimeoutMs) rejects with a DeliveryError listing what is still held; delivery goes on.
   */
  async flush(timeoutMs = this.#flushTimeoutMs): Promise<void> {
    const drained = this.#outbox.drain();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<"late">((r) => {
      timer = setTimeout(() => r("late"), timeoutMs);
    });
    const outcome = await Promise.race([drained, late]);
    clearTimeout(timer);
    if (outcome === "late") {
      const pending = this.#outbox.pending();
      throw new DeliveryError(
        `flush(): ${pending.length} events not acknowledged by Tally within ${timeoutMs} ms (still retrying)`,
        pending,
      );
    }
  }

  /**
   * Stops taking events (track() calls waiting for room fail with ClientClosedError) and delivers everything
   * buffered. Past `timeoutMs` (default flushTimeoutMs) it stops
   * retrying and rejects with a DeliveryError whose `undelivered` are the events Tally has not acknowledged —
   * the only way events leave this client without an acknowledgement or a refusal. Call it on SIGTERM.
   */
  close(timeoutMs = this.#flushTimeoutMs): Promise<void> {
    if (!this.#closing) {
      this.#outbox.refuseWaiting();
      this.#closing = this.#close(timeoutMs);
    }
    return this.#closing;
  }

  async #close(timeoutMs: number): Promise<void> {
    try {
      await this.flush(timeoutMs);
    } catch (err) {
      if (!(err instanceof DeliveryError)) throw err;
      const undelivered = await this.#outbox.abandon();
      throw new DeliveryError(
        `close(): ${undelivered.length} events not acknowledged by Tally within ${timeoutMs} ms; they are in err.undelivered (sending them again with their ids is safe)`,
        undelivered,
      );
    }
    await this.#outbox.abandon();
  }

  /** Counts since the client started (sent, duplicates, retried, rejected, batches) and `buffered` now. */
  metrics(): ClientMetrics {
    return this.#outbox.metrics();
  }
}

function positive(name: string, value: number, zeroOk = false): number {
  if (!Number.isFinite(value) || value < 0 || (value === 0 && !zeroOk)) {
    throw new RangeError(
      `TallyClient option ${name} must be a ${zeroOk ? "non-negative" : "positive"} number (got ${value})`,
    );
  }
  return value;
}
