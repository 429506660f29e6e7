// Prometheus metrics: one registry per Tally instance; capabilities add their own metrics to it.
import { type Aggregator, Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

export interface Metrics {
  registry: Registry;
  httpDuration: Histogram<"method" | "route" | "status">;
  counter<L extends string>(name: string, help: string, labelNames: readonly L[]): Counter<L>;
  histogram<L extends string>(name: string, help: string, labelNames: readonly L[], buckets: number[]): Histogram<L>;
  /**
   * `aggregator`: how a cluster's processes' values add up in /metrics (TALLY_WORKERS > 1): a timestamp takes the
   * max, a count the sum (the default).
   */
  gauge<L extends string>(name: string, help: string, labelNames: readonly L[], aggregator?: Aggregator): Gauge<L>;
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "tally_" });
  return {
    registry,
    httpDuration: new Histogram({
      name: "tally_http_request_duration_seconds",
      help: "HTTP request duration by route template and status",
      labelNames: ["method", "route", "status"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    counter: (name, help, labelNames) => new Counter({ name, help, labelNames, registers: [registry] }),
    histogram: (name, help, labelNames, buckets) =>
      new Histogram({ name, help, labelNames, buckets, registers: [registry] }),
    gauge: (name, help, labelNames, aggregator = "sum") =>
      new Gauge({ name, help, labelNames, aggregator, registers: [registry] }),
  };
}
