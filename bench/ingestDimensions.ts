// BENCH_DIMENSIONS=1 adds phases to each round of bench:ingest: the same HTTP ingest of the same batches, but on
// meters that declare 2 dimensions (model: 20 values, token_type: 2), each event carrying both properties. Tally then
// resolves each event's dimension set and counts the combinations per (customer, meter, month) for the cardinality
// guard, inside the ingest transaction. Two phases without dimensions go with it in the same round: the same events
// (same properties) on meters without dimensions — the cost of dimensions alone — and events without properties, as
// the plain HTTP phase has always sent. Each of these starts on empty tables (dimension tables included) with a fresh
// Tally process, so in the phase with dimensions every combination is new to the guard for its customer and month:
// 1,000 customers × 40 combinations = 40,000 first sights in 400,000 events, the worst case, which a month sees once.
// Right after it, in the same process, a fourth phase sends new events of the same combinations (events tables
// emptied, the dimension tables kept): the steady state, where the guard knows them all. The order of the first three
// rotates from round to round; ratios are printed per round and for the medians.
import { rng } from "./harness.js";

export const WITH_DIMENSIONS = process.env.BENCH_DIMENSIONS === "1";
export const DIMENSIONS = ["model", "token_type"];
const MODELS = Array.from({ length: 20 }, (_, i) => `model-${String(i).padStart(2, "0")}`);
const TOKEN_TYPES = ["input", "output"];

/**
 * The meter with dimensions that stands for `meter` in the dimensional phase: the same key in capitals, so that rows
 * and index entries are as long as the other phases' (a longer key cost ~25 bytes of WAL per event).
 */
export const dimensionalMeter = (meter: string) => meter.toUpperCase();

const random = rng(14);

/**
 * The kinds of HTTP phase a round runs: no properties; the 2 properties on meters without dimensions; with them, all
 * combinations new; with them again, all known.
 */
export type HttpKind = "http" | "props" | "dims" | "known";

/** A model and a token type drawn at random, as properties of the event. */
function dressed<E extends { meter: string }>(e: E, onDimensionalMeter: boolean) {
  return {
    ...e,
    meter: onDimensionalMeter ? dimensionalMeter(e.meter) : e.meter,
    properties: {
      model: MODELS[Math.floor(random() * MODELS.length)] as string,
      token_type: TOKEN_TYPES[Math.floor(random() * TOKEN_TYPES.length)] as string,
    },
  };
}

/** How a kind of phase dresses a batch's events. */
export function dressFor(kind: HttpKind) {
  return <E extends { meter: string }>(events: E[]): E[] =>
    kind === "http" ? events : events.map((e) => dressed(e, kind !== "props"));
}

/**
 * The HTTP phases of round `r`: without BENCH_DIMENSIONS only "http"; with it the first three rotated each round so
 * that a drift of the machine's load favours none, "known" always right after "dims".
 */
export function httpKinds(r: number): HttpKind[] {
  if (!WITH_DIMENSIONS) return ["http"];
  const all: HttpKind[] = ["http", "props", "dims"];
  return all.map((_, i) => all[(i + r) % all.length] as HttpKind).flatMap((k) => (k === "dims" ? [k, "known"] : [k]));
}

/** Whether a phase of this kind starts afresh (a new Tally, empty dimension tables): all but "known". */
export const startsAfresh = (kind: HttpKind) => kind !== "known";

/** Each kind's value through `f`; kinds a round did not run take the plain phase's. */
export function byKind<P, R>(phases: Partial<Record<HttpKind, P>>, f: (p: P) => R): Record<HttpKind, R> {
  const of = (k: HttpKind) => f((phases[k] ?? phases.http) as P);
  return { http: of("http"), props: of("props"), dims: of("dims"), known: of("known") };
}

const rate = (n: number) => Math.round(n).toLocaleString("en-US");
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)] as number;

/** The end of a round's line: its events/s with properties and with dimensions. */
export const roundNote = (r: Record<HttpKind, number>) =>
  WITH_DIMENSIONS
    ? `, HTTP with 2 properties ${rate(r.props)}/s, with 2 dimensions ${rate(r.dims)}/s (combinations new), ` +
      `${rate(r.known)}/s (known)`
    : "";

/** The lines that answer "within 10% of the same run without dimensions?", from each round's events/s per kind. */
export function dimensionsVerdict(perRound: Record<HttpKind, number>[]): string {
  const m = byKind({ http: "http", props: "props", dims: "dims", known: "known" } as const, (k) =>
    median(perRound.map((x) => x[k])),
  );
  const line = (kind: "dims" | "known", over: HttpKind, what: string) => {
    const r = m[kind] / m[over];
    const ratios = perRound.map((x) => `${(x[kind] / x[over]).toFixed(2)}×`).join(", ");
    const combinations = kind === "dims" ? "every combination new" : "combinations known";
    return (
      `With 2 dimensions (${combinations}): ${rate(m[kind])} events/s against ${rate(m[over])} ${what}: ` +
      `${r.toFixed(2)}× (medians; per round: ${ratios}); ${r >= 0.9 ? "within" : "NOT within"} 10%.`
    );
  };
  const same = "for the same events on meters without dimensions";
  return [
    line("dims", "props", same),
    line("dims", "http", "for events without properties"),
    line("known", "props", same),
    line("known", "http", "for events without properties"),
  ].join("\n");
}
