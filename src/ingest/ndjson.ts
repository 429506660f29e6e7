// Reading an NDJSON body: lines parsed and checked one by one (each line's meter looked up, and reloaded if unknown,
// before its synchronous check), valid events gathered into bounded chunks for the service to write, and every
// problem kept on the error list — also for the lines read after writing stopped.
import type { MeterCache } from "../catalog/meterCache.js";
import type { Aggregation } from "../catalog/schemas.js";
import type { Queryable } from "../db/types.js";
import { hourOf } from "./batch.js";
import type { Line } from "./body.js";
import { checkEvent, ErrorList, PairTracker } from "./outcome.js";
import { EventChecker, type ValidationContext, type ValidEvent } from "./validate.js";

/** A chunk holds at most this many events and characters (bounded memory, sort and COPY). */
const CHUNK_EVENTS = 20_000;
const CHUNK_CHARS = 4 * 1024 * 1024;

export class NdjsonReader {
  readonly errors = new ErrorList();
  /** What the valid events add per (customer, meter), and the hours they touch. */
  readonly pairs = new PairTracker();
  readonly hours = new Set<number>();
  /** Events (non-blank lines) read so far: the index of the next one. */
  index = 0;
  /** The body has no more lines. */
  ended = false;
  readonly #lines: AsyncIterator<Line>;
  readonly #checker: EventChecker;
  /** The meter of the line being checked, for the checker's synchronous lookup. */
  #aggregation: Aggregation | undefined;

  constructor(
    source: AsyncIterable<Line>,
    context: Omit<ValidationContext, "aggregationOf">,
    private readonly meters: MeterCache,
    private readonly bound: string | null,
  ) {
    this.#lines = source[Symbol.asyncIterator]();
    this.#checker = new EventChecker({ ...context, aggregationOf: () => this.#aggregation });
  }

  /**
   * The next chunk of valid events, from event index `first`; it stops early at the first bad line. `via`: where
   * meters are reloaded from (the open transaction on the embedded engine, whose one connection it holds).
   */
  async chunk(via?: Queryable): Promise<{ first: number; events: ValidEvent[] }> {
    const events: ValidEvent[] = [];
    const first = this.index;
    let chars = 0;
    while (events.length < CHUNK_EVENTS && chars < CHUNK_CHARS) {
      const line = await this.#nextLine();
      if (!line) break;
      const event = await this.#check(line, via);
      if (!event) break;
      this.pairs.add(event.customer, event.meter, event.value);
      this.hours.add(hourOf(event.tsMs));
      events.push(event);
      chars += event.customer.length + event.id.length + (event.properties?.length ?? 0);
    }
    return { first, events };
  }

  /** Reads and checks the rest of the body without keeping events, so every bad line is reported. */
  async drain(): Promise<void> {
    for (let line = await this.#nextLine(); line; line = await this.#nextLine()) await this.#check(line);
  }

  async #nextLine(): Promise<Line | undefined> {
    for (;;) {
      const { value, done } = await this.#lines.next();
      if (done) {
        this.ended = true;
        return undefined;
      }
      if (value.problem || (value.text ?? "").trim() !== "") return value;
    }
  }

  async #check(line: Line, via?: Queryable): Promise<ValidEvent | undefined> {
    const i = this.index++;
    if (line.problem) {
      this.errors.add([
        { index: i, line: line.number, field: `events[${i}]`, message: line.problem, kind: "malformed" },
      ]);
      return undefined;
    }
    let raw: unknown;
    try {
      raw = JSON.parse(line.text ?? "");
    } catch (err) {
      const message = `line ${line.number} is not valid JSON: ${(err as Error).message}`;
      this.errors.add([{ index: i, line: line.number, field: `events[${i}]`, message, kind: "malformed" }]);
      return undefined;
    }
    const meter = (raw as { meter?: unknown } | null)?.meter;
    this.#aggregation = typeof meter === "string" ? await this.meters.lookup(meter, via) : undefined;
    const checked = checkEvent(raw, i, this.#checker, this.bound);
    if (Array.isArray(checked)) {
      this.errors.add(checked.map((e) => ({ ...e, line: line.number })));
      return undefined;
    }
    return checked;
  }
}
