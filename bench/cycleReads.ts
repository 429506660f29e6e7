// Part of npm run bench:query — the reads of one period (summary, invoice preview, entitlement) for customers on
// UTC calendar months and then, the same customers, anchored on the 17th at 09:00 (issue #24: an anchored period
// is read from day and hour rollups, not the monthly one, and must answer within 1.2× of the calendar month).
import type { Queryable } from "../src/db/types.js";
import { httpRequest, percentile, rng, table, time } from "./harness.js";

const HOUR = 3_600_000;

type Get = (url: string) => Promise<{ status: number; text: string }>;

/** The anchor: the 17th at 09:00 UTC of the month before `now` (so the period in progress starts on a 17th). */
function anchorBefore(now: Date): Date {
  const a = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 17, 9));
  return a <= now ? a : new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 17, 9));
}

async function put(base: string, key: string, path: string, body: unknown, method = "PUT"): Promise<void> {
  const res = await httpRequest(`${base}${path}`, { key, method, agent: false, body: JSON.stringify(body) });
  if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${res.text}`);
}

/** p50/p95 of each read for `customers`, one request per customer and kind, in a shuffled order. */
async function measure(base: string, get: Get, customers: string[], seed: number): Promise<Map<string, number[]>> {
  const order = [...customers];
  const random = rng(seed);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j] as string, order[i] as string];
  }
  const kinds: Record<string, (c: string) => string> = {
    summary: (c) => `/v1/customers/${c}/summary`,
    "invoice preview": (c) => `/v1/customers/${c}/invoice`,
    entitlement: (c) => `/v1/entitlements/${c}/api_calls`,
  };
  const out = new Map<string, number[]>();
  for (const [kind, path] of Object.entries(kinds)) {
    const ms: number[] = [];
    for (const c of order) {
      const [t, res] = await time(() => get(`${base}${path(c)}`));
      if (res.status !== 200) throw new Error(`${kind} ${c}: ${res.status} ${res.text}`);
      ms.push(t);
    }
    out.set(kind, ms);
  }
  return out;
}

/** The anchored period's api_calls of `customer`, from Tally and from raw events: equal, or the run fails. */
async function checkExact(db: Queryable, base: string, get: Get, customer: string): Promise<void> {
  const res = await get(`${base}/v1/customers/${customer}/summary`);
  const body = JSON.parse(res.text) as {
    period: { start: string; end: string };
    meters: { meter: string; quantity: string }[];
  };
  const { rows } = await db.query<{ q: string | null }>(
    `SELECT trim_scale(sum(value))::text AS q FROM usage_events
     WHERE customer_id = $1 AND meter = 'api_calls' AND ts >= $2 AND ts < $3`,
    [customer, body.period.start, body.period.end],
  );
  const tally = body.meters.find((m) => m.meter === "api_calls")?.quantity ?? "0";
  if (tally !== (rows[0]?.q ?? "0")) throw new Error(`${customer}: Tally says ${tally}, raw events ${rows[0]?.q}`);
}

/**
 * Subscribes `count` customers to a priced plan on calendar months and measures their reads; then moves the same
 * customers to a cycle anchored on the 17th at 09:00 and measures again. Prints both and their ratio.
 */
export async function benchCycleReads(o: {
  base: string;
  key: string;
  /** The database, to check anchored answers against raw events (a server only: an embedded one is the child's). */
  db: Queryable | undefined;
  get: Get;
  count: number;
}): Promise<void> {
  const { base, key, get } = o;
  const now = new Date();
  const start = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 2, 1));
  await put(base, key, "/v1/plans/cycles", { name: "Cycles", currency: "USD" });
  await put(
    base,
    key,
    "/v1/plans/cycles/prices",
    {
      meter: "api_calls",
      effective_from: start.toISOString(),
      model: "graduated",
      base_fee: "30",
      tiers: [
        { up_to: "1000", unit_price: "0" },
        { up_to: null, unit_price: "0.01" },
      ],
    },
    "POST",
  );
  const customers = Array.from({ length: o.count }, (_, i) => `cust-${i}`);
  const subscribe = async (billing?: object) => {
    for (const c of customers) {
      await put(base, key, `/v1/customers/${c}/subscription`, { plan: "cycles", start: start.toISOString(), billing });
    }
  };
  const anchor = anchorBefore(now);
  const calendar = new Map<string, number[]>();
  const anchored = new Map<string, number[]>();
  const add = (into: Map<string, number[]>, from: Map<string, number[]>) => {
    for (const [kind, ms] of from) into.set(kind, [...(into.get(kind) ?? []), ...ms]);
  };
  // Calendar, anchored, calendar, anchored: whatever the server does meanwhile (autovacuum after the load, say)
  // weighs on both alike.
  for (let round = 0; round < 2; round++) {
    await subscribe();
    for (const c of customers.slice(0, 20)) await get(`${base}/v1/customers/${c}/summary`); // warm up
    add(calendar, await measure(base, get, customers, 11 + round));
    await subscribe({ interval: "month", anchor: anchor.toISOString() });
    await new Promise((r) => setTimeout(r, 1_100)); // entitlements of unlimited pairs are cached for a second
    if (round === 0 && o.db) for (const c of customers.slice(0, 5)) await checkExact(o.db, base, get, c);
    for (const c of customers.slice(0, 20)) await get(`${base}/v1/customers/${c}/summary`); // warm up
    add(anchored, await measure(base, get, customers, 11 + round));
  }
  console.log(o.db ? "anchored summaries equal raw events (5 customers checked)" : "(embedded: no raw check)");
  const rows = [...calendar.keys()].map((kind) => {
    const [c, a] = [calendar.get(kind) as number[], anchored.get(kind) as number[]];
    const f = (xs: number[], p: number) => `${percentile(xs, p).toFixed(2)} ms`;
    return [kind, f(c, 50), f(c, 95), f(a, 50), f(a, 95), `${(percentile(a, 95) / percentile(c, 95)).toFixed(2)}×`];
  });
  console.log(
    `\nbilling cycles: the same ${o.count} customers on calendar months and anchored at ${anchor.toISOString()} (period from the ${anchor.getUTCDate()}th, ${Math.round((now.getTime() - anchor.getTime()) / HOUR)} h in), two rounds of each, interleaved`,
  );
  console.log(
    table(["read", "calendar p50", "p95", "anchored p50", "p95", "anchored p95 / calendar p95 (target ≤ 1.2×)"], rows),
  );
}
