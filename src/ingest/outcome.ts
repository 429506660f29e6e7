// What a batch comes to besides its rows: each event's problems (its check, with the key's customer binding), the
// list of problems that refuses the batch, and what it added per (customer, meter) for the listeners of committed
// batches.
import { AppError, type FieldError } from "../errors.js";
import type { ErrorKind, EventChecker, ValidEvent } from "./validate.js";

const MAX_REPORTED_ERRORS = 1_000;
const MAX_TRACKED_PAIRS = 10_000;

/** Roughly what a batch added to one (customer, meter): binary floating point, for estimates only. */
export interface PairDelta {
  count: number;
  sum: number;
  max: number;
}

type KindedError = FieldError & { kind: ErrorKind | "forbidden"; line?: number };

/** One event checked, and refused if the API key is bound to another customer. */
export function checkEvent(
  raw: unknown,
  index: number,
  checker: EventChecker,
  bound: string | null,
): KindedError[] | ValidEvent {
  const verdict = checker.check(raw, index);
  if (!verdict.ok) return verdict.errors;
  if (bound && verdict.event.customer !== bound) {
    return [
      {
        index,
        field: `events[${index}].customer`,
        message: `this API key may only send events for customer "${bound}"`,
        kind: "forbidden",
      },
    ];
  }
  return verdict.event;
}

export class ErrorList {
  readonly items: KindedError[] = [];
  count = 0;
  add(errors: KindedError[]): void {
    this.count += errors.length;
    for (const e of errors) if (this.items.length < MAX_REPORTED_ERRORS) this.items.push(e);
  }
  toAppError(events: number): AppError {
    const forbidden = this.items.some((e) => e.kind === "forbidden");
    const malformed = this.items.some((e) => e.kind === "malformed");
    const status = forbidden ? 403 : malformed ? 400 : 422;
    const code = forbidden ? "customer_not_allowed" : malformed ? "invalid_events" : "events_rejected";
    const badEvents = new Set(this.items.map((e) => e.index)).size;
    const errors = this.items.map(({ kind: _kind, ...e }) => e);
    const more = this.count - this.items.length;
    return new AppError(
      status,
      code,
      `${badEvents} of ${events} events are invalid (${this.count} problems${more > 0 ? `, first ${this.items.length} listed` : ""}); nothing was stored`,
      { errors, extra: more > 0 ? { errors_not_listed: more } : {} },
    );
  }
}

export class PairTracker {
  readonly map = new Map<string, Map<string, PairDelta>>();
  truncated = false;
  #size = 0;
  add(customer: string, meter: string, value: string): void {
    let meters = this.map.get(customer);
    let delta = meters?.get(meter);
    if (!delta) {
      if (this.#size >= MAX_TRACKED_PAIRS) {
        this.truncated = true;
        return;
      }
      if (!meters) {
        meters = new Map();
        this.map.set(customer, meters);
      }
      delta = { count: 0, sum: 0, max: Number.NEGATIVE_INFINITY };
      meters.set(meter, delta);
      this.#size += 1;
    }
    const v = Number(value);
    delta.count += 1;
    delta.sum += v;
    if (v > delta.max) delta.max = v;
  }
}
