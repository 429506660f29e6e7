// What the client reports: events Tally refused (with its reasons), events it could not deliver by a deadline, a
// full buffer, and answers to reads that were not what was asked for.

/** One event as the client sends it: `id` and `timestamp` are filled in by `track` when absent. */
export interface TrackedEvent {
  id: string;
  customer: string;
  meter: string;
  value?: number | string;
  timestamp: string;
  properties?: Record<string, string>;
}

/** A problem Tally named for one event (field and message as in its problem+json answer). */
export interface EventProblem {
  field: string;
  message: string;
}

/** An event Tally refused: it is removed from the buffer, and the rest of its batch is sent again. */
export interface Rejection {
  event: TrackedEvent;
  /** The HTTP status of the refusal (400, 422, 403, 413, …). */
  status: number;
  /** Tally's problem code, e.g. `events_rejected`, `invalid_events`, `customer_not_allowed`. */
  code: string;
  problems: EventProblem[];
}

/** Tally's problem+json body (RFC 9457), as far as the client reads it. */
export interface Problem {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  code?: string;
  errors?: { index?: number; field: string; message: string }[];
  errors_not_listed?: number;
  [key: string]: unknown;
}

/** `close()`/`flush()` reached their deadline with events Tally has not acknowledged. */
export class DeliveryError extends Error {
  override name = "DeliveryError";
  /**
   * The events not acknowledged. Some may have been stored (an answer lost in flight): sending them again later,
   * with these ids, is safe — Tally counts each (customer, id) once.
   */
  readonly undelivered: TrackedEvent[];
  constructor(message: string, undelivered: TrackedEvent[], options?: ErrorOptions) {
    super(message, options);
    this.undelivered = undelivered;
  }
}

/** `track` with `onBufferFull: "error"` (or too many waiting `track` calls) when the buffer is full. */
export class BufferFullError extends Error {
  override name = "BufferFullError";
}

/** `track` after `close()`. */
export class ClientClosedError extends Error {
  override name = "ClientClosedError";
}

/** A read that Tally answered with an error (or that failed on the way). */
export class TallyApiError extends Error {
  override name = "TallyApiError";
  constructor(
    message: string,
    readonly status: number,
    readonly problem: Problem | undefined,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}
