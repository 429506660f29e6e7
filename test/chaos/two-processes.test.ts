// Two Tally processes on one database, both running every job every second while events arrive through both:
// each job runs exactly once per tick and never twice at once, and every alert, webhook and Stripe meter event
// exists once. (An embedded database belongs to one process; several processes are a server deployment.)
import { once } from "node:events";
import http from "node:http";
import type { AddressInfo } from "node:net";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { createServerDatabase } from "../helpers/databases.js";
import { until } from "../helpers/eventually.js";
import { startFakeStripe } from "../helpers/fakeStripe.js";
import { spawnTally } from "../helpers/process.js";
import { pace } from "./helpers.js";

const KEY = "chaos-admin-key-0123456789abcdef";
const CUSTOMERS = 20;

describe("two processes (PostgreSQL)", () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  it("when both run every job each second during ingest, then each tick runs once, runs never overlap, and alerts, webhooks and Stripe events exist once", async () => {
    const server = await createServerDatabase();
    cleanups.push(server.drop);
    const deliveries = new Map<string, number>();
    const receiver = http.createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        const id = req.headers["tally-event-id"] as string;
        deliveries.set(id, (deliveries.get(id) ?? 0) + 1);
        res.writeHead(204).end();
      });
    });
    receiver.listen(0, "127.0.0.1");
    await once(receiver, "listening");
    cleanups.push(() => new Promise((r) => receiver.close(r)));

    const stripe = await startFakeStripe();
    cleanups.push(() => stripe.close());
    const env = {
      STRIPE_SECRET_KEY: stripe.apiKey,
      STRIPE_API_BASE: stripe.url,
      TALLY_CRON_STRIPE: "* * * * * *",
      TALLY_ADMIN_KEY: KEY,
      LOG_LEVEL: "warn",
      DATABASE_URL: server.url,
      TALLY_JOBS: "on",
      TALLY_CRON_REFRESH: "* * * * * *",
      TALLY_CRON_LIMITS: "* * * * * *",
      TALLY_CRON_WEBHOOKS: "* * * * * *",
      TALLY_WEBHOOK_ALLOW_PRIVATE: "true", // the receiver listens on 127.0.0.1
    };
    const [a, b] = await Promise.all([spawnTally(env, 60_000), spawnTally(env, 60_000)]);
    cleanups.push(() => Promise.all([a.stop(), b.stop()]));
    const call = async (url: string, method: string, path: string, body?: unknown) => {
      const res = await fetch(`${url}${path}`, {
        method,
        headers: { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${text}`);
      return text;
    };
    await call(a.url, "PUT", "/v1/meters/calls", {
      name: "Calls",
      unit: "call",
      aggregation: "sum",
      stripe_event_name: "calls",
    });
    const hook = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks`;
    await call(a.url, "POST", "/v1/webhook-endpoints", { url: hook });
    for (let c = 0; c < CUSTOMERS; c++) {
      await call(b.url, "PUT", `/v1/customers/cust-${c}`, { stripe_customer_id: `cus_${c}` });
      await call(b.url, "PUT", `/v1/customers/cust-${c}/limits/calls`, { soft: "50", hard: "100", unit: "quantity" });
    }

    // 6 seconds (and 16 rounds at least) of ingest through both processes: every customer passes its soft, then its
    // hard threshold. The
    // events are from the previous hour, so the Stripe sync (complete hours only) sends them during the test.
    const started = Date.now();
    const lastHour = new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000 - 1_800_000).toISOString();
    for (let round = 0; round < 16 || Date.now() - started < 6_000; round++) {
      const events = Array.from({ length: CUSTOMERS }, (_, c) => ({
        id: `r${round}-c${c}`,
        customer: `cust-${c}`,
        meter: "calls",
        value: 7,
        timestamp: lastHour,
      }));
      await call(round % 2 ? a.url : b.url, "POST", "/v1/events", { events });
      await pace(200);
    }
    // The schedules and deliveries settle: every alert delivered, every ingested unit sent to Stripe, and then
    // each job has ticked twice more (a duplicate would have had its chance).
    await until(
      () => deliveries.size,
      (n) => n >= CUSTOMERS * 2,
      { timeout: 30_000, message: "webhook deliveries" },
    );
    const ingested = async () => {
      const c = new pg.Client({ connectionString: server.url });
      await c.connect();
      try {
        const { rows } = await c.query<{ total: string }>(
          "SELECT coalesce(sum(value), 0)::text AS total FROM usage_events",
        );
        return BigInt(rows[0]?.total ?? "0");
      } finally {
        await c.end();
      }
    };
    const total = await ingested();
    await until(
      () => stripe.events.reduce((sum, e) => sum + BigInt(e.value), 0n),
      (sent) => sent >= total,
      { timeout: 30_000, message: "Stripe sync of every ingested unit" },
    );
    const ticks = async () => {
      const c = new pg.Client({ connectionString: server.url });
      await c.connect();
      try {
        const { rows } = await c.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM job_runs WHERE finished_at IS NOT NULL",
        );
        return rows[0]?.n ?? 0;
      } finally {
        await c.end();
      }
    };
    const runsNow = await ticks();
    await until(ticks, (n) => n >= runsNow + 8, { timeout: 30_000, message: "two more ticks of each job" });

    const client = new pg.Client({ connectionString: server.url });
    await client.connect();
    try {
      const ticks = await client.query<{ job: string; runs: number; ticks: number; runners: number }>(
        `SELECT job, count(*)::int AS runs, count(DISTINCT scheduled_for)::int AS ticks, count(DISTINCT runner)::int AS runners
         FROM job_runs WHERE scheduled_for IS NOT NULL GROUP BY job ORDER BY job`,
      );
      const overlaps = await client.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM job_runs x JOIN job_runs y
           ON x.job = y.job AND x.id < y.id AND x.started_at < y.finished_at AND y.started_at < x.finished_at`,
      );
      const alerts = await client.query<{ n: number; distinct_n: number }>(
        "SELECT count(*)::int AS n, count(DISTINCT (customer_id, level))::int AS distinct_n FROM alerts",
      );
      console.log(
        `[two processes] job runs per job: ${JSON.stringify(ticks.rows)}; overlapping runs: ${overlaps.rows[0]?.n}; ` +
          `alerts: ${alerts.rows[0]?.n}; webhook events delivered: ${deliveries.size}, deliveries: ${[...deliveries.values()].reduce((x, y) => x + y, 0)}`,
      );
      const ledger = await client.query<{ n: string; total: string }>(
        "SELECT count(*)::text AS n, coalesce(sum(value), 0)::text AS total FROM usage_events",
      );
      const identifiers = stripe.events.map((e) => e.identifier);
      const sentUnits = stripe.events.reduce((sum, e) => sum + BigInt(e.value), 0n);
      console.log(
        `[two processes] Stripe: ${stripe.events.length} meter events, ${new Set(identifiers).size} distinct identifiers, ${sentUnits} units for ${ledger.rows[0]?.total} ingested`,
      );
      expect(new Set(identifiers).size).toBe(identifiers.length);
      expect(sentUnits.toString()).toBe(ledger.rows[0]?.total);
      for (const job of ["deliver-webhooks", "evaluate-limits", "refresh-rollups", "sync-stripe"]) {
        const row = ticks.rows.find((r) => r.job === job);
        expect(row?.runs, job).toBeGreaterThanOrEqual(4);
        expect(row?.runs, job).toBe(row?.ticks);
      }
      expect(overlaps.rows[0]?.n).toBe(0);
      expect(alerts.rows[0]).toEqual({ n: CUSTOMERS * 2, distinct_n: CUSTOMERS * 2 });
      expect(deliveries.size).toBe(CUSTOMERS * 2);
      expect([...deliveries.values()].every((n) => n === 1)).toBe(true);
    } finally {
      await client.end();
    }
  });
});
