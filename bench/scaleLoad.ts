// Load for bench/scale.ts: JSON batches from several clients against a running Tally, with every batch's latency,
// and a reader loop that repeats one GET while the load runs.
import { randomUUID } from "node:crypto";
import http from "node:http";
import { httpRequest, percentile } from "./harness.js";

export interface LoadShape {
  clients: number;
  batches: number;
  size: number;
  customers: number;
  /** The instant of event i of a batch sent at `nowMs` (ms). */
  tsOf: (i: number, nowMs: number) => number;
}

export interface LoadResult {
  events: number;
  seconds: number;
  rate: number;
  p50: number;
  p99: number;
  max: number;
}

/** BENCH_SLOW_MS: print each batch slower than this, with when it was sent (to line it up with the jobs' logs). */
const SLOW_MS = Number(process.env.BENCH_SLOW_MS ?? 0);
const METERS = ["api_calls", "tokens"];

function batchBody(shape: LoadShape, nowMs: number): string {
  const events = Array.from({ length: shape.size }, (_, i) => {
    const c = Math.floor(Math.random() * shape.customers);
    const meter = METERS[i % METERS.length] as string;
    const value = meter === "tokens" ? 1000 + (i % 9000) : 1 + (i % 300);
    const ts = new Date(shape.tsOf(i, nowMs)).toISOString();
    return `{"id":"${randomUUID()}","customer":"cust-${c}","meter":"${meter}","value":"${value}","timestamp":"${ts}"}`;
  });
  return `{"events":[${events.join(",")}]}`;
}

/** `shape.batches` batches in all, from `shape.clients` clients at once; latency of each from send to answer. */
export async function ingestLoad(url: string, key: string, shape: LoadShape): Promise<LoadResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: shape.clients * 2 });
  const latencies: number[] = [];
  let next = 0;
  let events = 0;
  const started = performance.now();
  try {
    await Promise.all(
      Array.from({ length: shape.clients }, async () => {
        while (next < shape.batches) {
          next += 1;
          const body = batchBody(shape, Date.now());
          const t0 = performance.now();
          const res = await httpRequest(`${url}/v1/events`, { key, method: "POST", agent, body });
          const took = performance.now() - t0;
          latencies.push(took);
          if (SLOW_MS && took > SLOW_MS)
            console.log(`slow batch: ${Math.round(took)} ms, sent at ${new Date(Date.now() - took).toISOString()}`);
          if (res.status !== 202) throw new Error(`ingest failed: ${res.status} ${res.text.slice(0, 300)}`);
          events += (JSON.parse(res.text) as { accepted: number }).accepted;
        }
      }),
    );
  } finally {
    agent.destroy();
  }
  const seconds = (performance.now() - started) / 1000;
  return {
    events,
    seconds,
    rate: events / seconds,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    max: Math.max(...latencies),
  };
}

/** Repeats GET `path` one after the other until `stop` resolves; the latencies (ms), each checked for 200. */
export async function readLoop(url: string, key: string, path: string, stop: Promise<unknown>): Promise<number[]> {
  let done = false;
  void stop.finally(() => {
    done = true;
  });
  const latencies: number[] = [];
  while (!done) latencies.push(await timedGet(url, key, path));
  return latencies;
}

/** One GET, its latency in ms; throws unless 200. */
export async function timedGet(url: string, key: string, path: string): Promise<number> {
  const t0 = performance.now();
  const res = await httpRequest(`${url}${path}`, { key, agent: false });
  const ms = performance.now() - t0;
  if (res.status !== 200) throw new Error(`GET ${path}: ${res.status} ${res.text.slice(0, 300)}`);
  return ms;
}

export const ms = (n: number) => `${Math.round(n).toLocaleString("en")} ms`;
export const perS = (n: number) => `${Math.round(n).toLocaleString("en")}/s`;

export function latencySummary(values: number[]): string {
  if (values.length === 0) return "no answers";
  return `${values.length} answers, p50 ${ms(percentile(values, 50))}, p95 ${ms(percentile(values, 95))}, max ${ms(Math.max(...values))}`;
}
