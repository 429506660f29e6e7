// bench:limits, part 5 — the cost of the credit ledger computed on read (docs/credits.md): customers with 12 months
// of hourly usage on two meters (one per_unit, one graduated) and 20 grants each (priorities, expiries, meter
// restrictions), then GET /v1/customers/{id}/credits over HTTP. History older than the event window can only be
// ingested with a wider window, so a first Tally (TALLY_EVENT_MAX_AGE_DAYS=400) loads it; the reads are measured
// twice: on that Tally (every period still open to events: every read prices 12 months of hours) and on a second
// Tally with the default 35-day window on the same database (closed periods priced once per process).
//   BENCH_CREDIT_CUSTOMERS (5), BENCH_CREDIT_MONTHS (12), BENCH_CREDIT_GRANTS (20), BENCH_CREDIT_READS (200).
import { randomBytes } from "node:crypto";
import http from "node:http";
import { benchDatabase, httpRequest, percentile, startTally, table } from "./harness.js";

const CUSTOMERS = Number(process.env.BENCH_CREDIT_CUSTOMERS ?? 5);
const MONTHS = Number(process.env.BENCH_CREDIT_MONTHS ?? 12);
const GRANTS = Number(process.env.BENCH_CREDIT_GRANTS ?? 20);
const READS = Number(process.env.BENCH_CREDIT_READS ?? 200);
const HOUR = 3_600_000;

export async function creditHistoryBench(serverUrl: string | undefined): Promise<void> {
  const key = `bench-${randomBytes(12).toString("hex")}`;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  const base: Record<string, string> = {
    TALLY_ADMIN_KEY: key,
    LOG_LEVEL: "warn",
    TALLY_JOBS: "off",
    TALLY_RATE_LIMIT_RPS: "0",
  };
  const { env: where, cleanup } = await benchDatabase("tally-bench-credits-", serverUrl);
  Object.assign(base, where);
  const rows: string[][] = [];
  try {
    let tally = await startTally({ ...base, TALLY_EVENT_MAX_AGE_DAYS: "400" });
    const call = async (method: string, path: string, body?: unknown) => {
      const r = await httpRequest(`${tally.url}${path}`, {
        key,
        method,
        agent,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${r.text}`);
      return r.text;
    };
    const now = Date.now();
    const start = now - MONTHS * 30.4 * 24 * HOUR;
    try {
      for (const m of ["calls", "tokens"]) {
        await call("PUT", `/v1/meters/${m}`, { name: m, unit: "unit", aggregation: "sum" });
      }
      await call("PUT", "/v1/plans/credits", { name: "Credits", currency: "USD" });
      const from = new Date(start - 40 * 86_400_000).toISOString();
      await call("POST", "/v1/plans/credits/prices", {
        meter: "calls",
        effective_from: from,
        model: "per_unit",
        unit_price: "0.001",
      });
      await call("POST", "/v1/plans/credits/prices", {
        meter: "tokens",
        effective_from: from,
        model: "graduated",
        tiers: [
          { up_to: "2000", unit_price: "0" },
          { up_to: null, unit_price: "0.0001" },
        ],
      });
      const t0 = performance.now();
      let events = 0;
      for (let c = 0; c < CUSTOMERS; c++) {
        const id = `history-${c}`;
        await call("PUT", `/v1/customers/${id}`, {});
        await call("PUT", `/v1/customers/${id}/subscription`, { plan: "credits", start: from });
        const batch: object[] = [];
        const flush = async () => {
          if (batch.length === 0) return;
          await call("POST", "/v1/events", { events: batch.splice(0) });
        };
        for (let h = Math.floor(start / HOUR) * HOUR; h < now - HOUR; h += HOUR) {
          const n = (h / HOUR) % 17;
          batch.push({
            id: `c${h}`,
            customer: id,
            meter: "calls",
            value: 20 + n,
            timestamp: new Date(h + 60_000).toISOString(),
          });
          batch.push({
            id: `t${h}`,
            customer: id,
            meter: "tokens",
            value: 150 + n,
            timestamp: new Date(h + 120_000).toISOString(),
          });
          events += 2;
          if (batch.length >= 10_000) await flush();
        }
        await flush();
        for (let g = 0; g < GRANTS; g++) {
          const effective = start + (g / GRANTS) * (now - start);
          await call("POST", `/v1/customers/${id}/credit-grants`, {
            amount: `${10 + (g % 7) * 5}.00`,
            priority: (g * 37) % 101,
            effective_at: new Date(effective).toISOString(),
            ...(g % 3 === 0 ? { expires_at: new Date(effective + 45 * 86_400_000).toISOString() } : {}),
            ...(g % 4 === 1 ? { meters: ["calls"] } : {}),
          });
        }
      }
      await call("PUT", "/v1/customers/no-credits", {});
      await call("PUT", "/v1/customers/no-credits/subscription", { plan: "credits", start: from });
      const recent: object[] = [];
      for (let h = Math.floor((now - 30 * 86_400_000) / HOUR) * HOUR; h < now - HOUR; h += HOUR) {
        const at = new Date(h).toISOString();
        recent.push({ id: `c${h}`, customer: "no-credits", meter: "calls", value: 20, timestamp: at });
        recent.push({ id: `t${h}`, customer: "no-credits", meter: "tokens", value: 150, timestamp: at });
      }
      await call("POST", "/v1/events", { events: recent });
      await call("POST", "/v1/jobs/refresh-rollups/run");
      console.log(
        `\ncredit ledger: ${CUSTOMERS} customers × ${MONTHS} months of hourly usage (${events.toLocaleString("en-US")} events) × ${GRANTS} grants, loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
      );
      rows.push(await measure("every period open to events (TALLY_EVENT_MAX_AGE_DAYS=400)", call, Math.min(READS, 40)));
    } finally {
      await tally.stop();
    }
    tally = await startTally(base);
    try {
      rows.push(await measure("default 35-day window", call, READS));
    } finally {
      await tally.stop();
    }
    const head = ["Tally", "balance: first read", "p50", "p95", "p99", "summary p50 / p95 (baseline)", "p95 ratio"];
    console.log(`\n${table([...head, "reads"], rows)}`);
  } finally {
    agent.destroy();
    await cleanup();
  }
}

async function measure(
  label: string,
  call: (method: string, path: string) => Promise<string>,
  reads: number,
): Promise<string[]> {
  const ms = (v: number) => `${v.toFixed(1)} ms`;
  const first = performance.now();
  const body = JSON.parse(await call("GET", "/v1/customers/history-0/credits")) as { balance: string };
  const cold = performance.now() - first;
  for (let c = 1; c < CUSTOMERS; c++) await call("GET", `/v1/customers/history-${c}/credits`);
  // Interleaved with the baseline: the summary of a customer on the same plan with a month of the same usage and no
  // grants (as every summary was before credits), so both see the same machine.
  const times: number[] = [];
  const baseline: number[] = [];
  for (let i = 0; i < reads; i++) {
    let t0 = performance.now();
    await call("GET", `/v1/customers/history-${i % CUSTOMERS}/credits`);
    times.push(performance.now() - t0);
    t0 = performance.now();
    await call("GET", "/v1/customers/no-credits/summary");
    baseline.push(performance.now() - t0);
  }
  console.log(`  ${label}: history-0 balance ${body.balance}`);
  return [
    label,
    ms(cold),
    ms(percentile(times, 50)),
    ms(percentile(times, 95)),
    ms(percentile(times, 99)),
    `${ms(percentile(baseline, 50))} / ${ms(percentile(baseline, 95))}`,
    `${(percentile(times, 95) / percentile(baseline, 95)).toFixed(1)}×`,
    String(reads),
  ];
}
