// npm run bench:clients — the TypeScript client against a local Tally (a child process, as bench:ingest runs it):
//   1. raw HTTP: BENCH_CLIENTS connections posting prebuilt BENCH_BATCH-event JSON bodies (bench:ingest's HTTP phase);
//   2. the client: one TallyClient in this process (concurrency BENCH_CLIENTS, batches of BENCH_BATCH) fed by
//      `await track(...)` as fast as it takes them, then flush(): events/s (target ≥ 0.9× phase 1: the client must not
//      be the bottleneck) and this process's CPU per event (the client's whole cost, events built included);
//   3. an outage: a service tracking BENCH_OUTAGE_RATE events/s while Tally is stopped (SIGSTOP) for BENCH_OUTAGE_S
//      seconds, then resumed: peak RSS and heap of this process, the most events held, how long track() waited
//      (backpressure at maxBufferedEvents), the time to deliver everything after the resume, and whether Tally
//      accepted exactly the events tracked.
// Each phase runs on a fresh Tally and data set. DATABASE_URL=postgres://... → a fresh database on that server;
// unset → the embedded engine. BENCH_ROUNDS (3), BENCH_BATCHES (400), BENCH_BATCH (1000), BENCH_CLIENTS (4),
// BENCH_OUTAGE_S (30; 0 skips), BENCH_OUTAGE_RATE (5000), BENCH_MAX_BUFFERED (100000).
import { randomUUID } from "node:crypto";
import http from "node:http";
import { TallyClient } from "../clients/typescript/src/index.js";
import { benchDatabase, cpuMeter, httpRequest, startTally, type TallyChild, table } from "./harness.js";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const BATCHES = Number(process.env.BENCH_BATCHES ?? 400);
const BATCH = Number(process.env.BENCH_BATCH ?? 1000);
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 4);
const OUTAGE_S = Number(process.env.BENCH_OUTAGE_S ?? 30);
const OUTAGE_RATE = Number(process.env.BENCH_OUTAGE_RATE ?? 5000);
const MAX_BUFFERED = Number(process.env.BENCH_MAX_BUFFERED ?? 100_000);
const CUSTOMERS = 1000;
const METERS = ["api_calls", "tokens", "storage_gb", "seats"];
const KEY = `bench-${randomUUID()}`;

/** A fresh Tally with the meters defined; `stop` also removes its data. */
async function freshTally(): Promise<{ t: TallyChild; stop(): Promise<void> }> {
  const data = await benchDatabase("tally-bench-clients-");
  const t = await startTally({
    ...data.env,
    TALLY_ADMIN_KEY: KEY,
    TALLY_JOBS: "off",
    TALLY_DB_POOL_SIZE: String(Math.max(10, CLIENTS * 2)),
  });
  for (const m of METERS) await t.put(`/v1/meters/${m}`, KEY, { name: m, unit: "unit", aggregation: "sum" });
  return {
    t,
    async stop() {
      await t.stop();
      await data.cleanup();
    },
  };
}

const eventAt = (i: number) => ({
  customer: `cust-${(i * 7919) % CUSTOMERS}`,
  meter: METERS[i % METERS.length] as string,
  value: String((i % 97) + 1),
});

interface Measured {
  events: number;
  seconds: number;
  selfCpu: number;
  tallyCpu: number;
}

/** bench:ingest's HTTP phase: prebuilt JSON bodies, time-ordered ids, CLIENTS connections. */
async function rawPhase(t: TallyChild): Promise<Measured> {
  const now = new Date().toISOString();
  const bodies = Array.from({ length: BATCHES }, (_, b) => {
    const tag = `${Date.now().toString(36)}${String(b).padStart(8, "0")}`;
    const events = Array.from({ length: BATCH }, (_, i) => ({ id: `${tag}-${i}`, ...eventAt(i), timestamp: now }));
    return JSON.stringify({ events });
  });
  const agent = new http.Agent({ keepAlive: true, maxSockets: CLIENTS * 2 });
  const cpu = await cpuMeter(t.child.pid, undefined);
  const started = performance.now();
  let next = 0;
  let accepted = 0;
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      while (next < bodies.length) {
        const body = bodies[next++] as string;
        const res = await httpRequest(`${t.url}/v1/events`, { key: KEY, method: "POST", agent, body });
        if (res.status !== 202) throw new Error(`ingest failed: ${res.status} ${res.text.slice(0, 300)}`);
        accepted += (JSON.parse(res.text) as { accepted: number }).accepted;
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const c = await cpu.stop();
  agent.destroy();
  if (accepted !== BATCHES * BATCH) throw new Error(`raw phase stored ${accepted} of ${BATCHES * BATCH}`);
  return { events: accepted, seconds, selfCpu: c.self, tallyCpu: c.tally };
}

/** One TallyClient fed as fast as `await track` returns, then flushed. */
async function clientPhase(t: TallyChild): Promise<Measured> {
  const client = new TallyClient({ url: t.url, apiKey: KEY, maxBatchEvents: BATCH, concurrency: CLIENTS });
  const total = BATCHES * BATCH;
  const cpu = await cpuMeter(t.child.pid, undefined);
  const started = performance.now();
  for (let i = 0; i < total; i++) await client.track(eventAt(i));
  await client.flush(600_000);
  const seconds = (performance.now() - started) / 1000;
  const c = await cpu.stop();
  await client.close();
  const m = client.metrics();
  if (m.sent - m.duplicates !== total || m.rejected !== 0) throw new Error(`client phase: ${JSON.stringify(m)}`);
  return { events: total, seconds, selfCpu: c.self, tallyCpu: c.tally };
}

function rssMb(): number {
  return process.memoryUsage().rss / 1024 / 1024;
}

/** A service tracking OUTAGE_RATE events/s through an outage of OUTAGE_S seconds (Tally SIGSTOPped). */
async function outagePhase(t: TallyChild) {
  const client = new TallyClient({ url: t.url, apiKey: KEY, maxBufferedEvents: MAX_BUFFERED });
  const rssBefore = rssMb();
  let peakRss = rssBefore;
  let peakHeap = 0;
  let maxBuffered = 0;
  let waitedMs = 0;
  let tracked = 0;
  const sample = setInterval(() => {
    peakRss = Math.max(peakRss, rssMb());
    peakHeap = Math.max(peakHeap, process.memoryUsage().heapUsed / 1024 / 1024);
    maxBuffered = Math.max(maxBuffered, client.metrics().buffered);
  }, 50);
  const warmup = 2;
  const runFor = (warmup + OUTAGE_S + 2) * 1000;
  const started = Date.now();
  const pid = t.child.pid as number;
  const stopAt = setTimeout(() => process.kill(pid, "SIGSTOP"), warmup * 1000);
  const resumeAt = setTimeout(() => process.kill(pid, "SIGCONT"), (warmup + OUTAGE_S) * 1000);
  // Paced in 10 ms ticks; a tick that finds track() waiting (backpressure) falls behind, as a real service would.
  while (Date.now() - started < runFor) {
    const due = Math.floor(((Date.now() - started) / 1000) * OUTAGE_RATE);
    while (tracked < due) {
      const t0 = performance.now();
      await client.track(eventAt(tracked));
      waitedMs += performance.now() - t0;
      tracked += 1;
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  clearTimeout(stopAt);
  clearTimeout(resumeAt);
  process.kill(pid, "SIGCONT");
  const drainStarted = Date.now();
  await client.close(600_000);
  const drainS = (Date.now() - drainStarted) / 1000;
  clearInterval(sample);
  const m = client.metrics();
  return { tracked, m, rssBefore, peakRss, peakHeap, maxBuffered, waitedS: waitedMs / 1000, drainS };
}

const num = (n: number) => Math.round(n).toLocaleString("en-US");
const us = (seconds: number, events: number) => ((seconds * 1e6) / events).toFixed(2);
const median = (xs: Measured[]) =>
  [...xs].sort((a, b) => a.events / a.seconds - b.events / b.seconds)[(xs.length - 1) >> 1] as Measured;

async function main(): Promise<void> {
  const where = process.env.DATABASE_URL ? `server (${new URL(process.env.DATABASE_URL).host})` : "embedded engine";
  console.log(
    `\nTally clients benchmark — ${where}; ${ROUNDS} rounds of ${BATCHES} × ${BATCH} events, ${CLIENTS} connections\n`,
  );
  const raw: Measured[] = [];
  const client: Measured[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    // Alternating order, each on a fresh Tally: neither phase always meets a warmer machine.
    for (const phase of r % 2 === 0 ? ["raw", "client"] : ["client", "raw"]) {
      const fresh = await freshTally();
      try {
        if (phase === "raw") raw.push(await rawPhase(fresh.t));
        else client.push(await clientPhase(fresh.t));
      } finally {
        await fresh.stop();
      }
    }
    const last = (xs: Measured[]) => num((xs.at(-1) as Measured).events / (xs.at(-1) as Measured).seconds);
    console.log(`  round ${r + 1}: raw HTTP ${last(raw)}/s, TallyClient ${last(client)}/s`);
  }
  const a = median(raw);
  const b = median(client);
  const ratio = b.events / b.seconds / (a.events / a.seconds);
  console.log(
    `\n${table(
      ["phase", "events/s", "× raw HTTP", "this process µs/event", "Tally µs/event"],
      [
        [
          `raw HTTP, ${CLIENTS} connections, prebuilt bodies`,
          num(a.events / a.seconds),
          "1.00×",
          us(a.selfCpu, a.events),
          us(a.tallyCpu, a.events),
        ],
        [
          `TallyClient, concurrency ${CLIENTS}, await track()`,
          num(b.events / b.seconds),
          `**${ratio.toFixed(2)}×**`,
          us(b.selfCpu, b.events),
          us(b.tallyCpu, b.events),
        ],
      ],
    )}\n\nMedians of ${ROUNDS} rounds. Target ≥ 0.90× raw HTTP: ${ratio >= 0.9 ? "met" : "missed"}.`,
  );

  if (OUTAGE_S > 0) {
    const fresh = await freshTally();
    try {
      const o = await outagePhase(fresh.t);
      const exact = o.m.sent - o.m.duplicates === o.tracked && o.m.rejected === 0;
      console.log(
        `\n${table(
          [
            "outage",
            "tracked",
            "stored (accepted)",
            "duplicates answered",
            "most held",
            "track() waited",
            "delivered after resume in",
            "RSS before → peak",
            "peak heap",
          ],
          [
            [
              `${OUTAGE_S} s at ${num(OUTAGE_RATE)} events/s`,
              num(o.tracked),
              `${num(o.m.sent - o.m.duplicates)} ${exact ? "(exactly the tracked)" : "(MISMATCH)"}`,
              num(o.m.duplicates),
              `${num(o.maxBuffered)} (limit ${num(MAX_BUFFERED)})`,
              `${o.waitedS.toFixed(1)} s`,
              `${o.drainS.toFixed(1)} s`,
              `${Math.round(o.rssBefore)} → ${Math.round(o.peakRss)} MB`,
              `${Math.round(o.peakHeap)} MB`,
            ],
          ],
        )}`,
      );
      if (!exact) process.exitCode = 1;
    } finally {
      await fresh.stop();
    }
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
