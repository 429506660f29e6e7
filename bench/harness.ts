// Shared by the benchmarks: run the built Tally as a child process, watch its RSS, percentiles, tables.
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import pg from "pg";
import type { Db } from "../src/db/types.js";
import { copyRow } from "../src/ingest/copyText.js";

/** BENCH_TALLY_ROOT: another checkout (built) to run as Tally, e.g. the previous commit for a before/after. */
const ROOT = process.env.BENCH_TALLY_ROOT ?? fileURLToPath(new URL("..", import.meta.url));

export interface TallyChild {
  url: string;
  engine: string;
  child: ChildProcess;
  rssMb(): number;
  /** Samples RSS every 50 ms until stop(), which returns the peak in MB. */
  watchRss(): { stop(): number };
  put(path: string, key: string, body: unknown): Promise<void>;
  stop(): Promise<void>;
}

function rssOf(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return kb / 1024;
}

/** Starts dist/src/main.js (run `npm run build` first; the bench scripts do), with `nodeArgs` for node itself. */
export async function startTally(env: Record<string, string>, nodeArgs: string[] = []): Promise<TallyChild> {
  const child = spawn(process.execPath, [...nodeArgs, "dist/src/main.js"], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "", PORT: "0", HOST: "127.0.0.1", LOG_LEVEL: "warn", ...env },
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`Tally did not start:\n${out}`));
    }, 60_000);
    child.stdout?.on("data", (d) => {
      out += d;
      const m = /Tally is running at (\S+) \(engine: (\w+)/.exec(out);
      if (m?.[1]) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on("exit", (code) => reject(new Error(`Tally exited with ${code}:\n${out}`)));
  });
  const engine = /\(engine: (\w+)/.exec(out)?.[1] ?? "?";
  const pid = child.pid as number;
  return {
    url,
    engine,
    child,
    rssMb: () => rssOf(pid),
    watchRss() {
      let peak = rssOf(pid);
      const timer = setInterval(() => {
        try {
          peak = Math.max(peak, rssOf(pid));
        } catch {
          // process gone
        }
      }, 50);
      return {
        stop() {
          clearInterval(timer);
          return peak;
        },
      };
    },
    async put(path, key, body) {
      const res = await fetch(`${url}${path}`, {
        method: "PUT",
        headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      if (res.status >= 300) throw new Error(`PUT ${path}: ${res.status} ${await res.text()}`);
    },
    async stop() {
      if (child.exitCode !== null) return;
      child.kill("SIGTERM");
      await once(child, "exit");
    },
  };
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx] as number;
}

/** A Markdown table, ready to paste into the README. */
export function table(head: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(" | ")} |`;
  return [line(head), line(head.map(() => "---")), ...rows.map(line)].join("\n");
}

/**
 * A fresh database for one benchmark run on the server `serverUrl` points at (an admin connection), dropped by
 * `drop`: benchmarks never touch a database someone uses.
 */
export async function freshServerDatabase(serverUrl: string): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `tally_bench_${randomBytes(4).toString("hex")}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: serverUrl });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

/**
 * Where a benchmark's Tally keeps its data: a fresh database on the server DATABASE_URL names (dropped by `cleanup`),
 * else a new embedded data directory (removed by `cleanup`). `env` holds the variable that selects it.
 * BENCH_KEEP=1 keeps it (cleanup only says where it is), to look into a loaded data set after a run.
 */
export async function benchDatabase(
  prefix: string,
  serverUrl = process.env.DATABASE_URL,
): Promise<{ env: Record<string, string>; cleanup(): Promise<void> }> {
  const keep = process.env.BENCH_KEEP === "1";
  const kept = (where: string) => async () => console.log(`BENCH_KEEP=1: the data is kept at ${where}`);
  if (serverUrl) {
    const fresh = await freshServerDatabase(serverUrl);
    return { env: { DATABASE_URL: fresh.url }, cleanup: keep ? kept(fresh.url) : fresh.drop };
  }
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return {
    env: { TALLY_DATA_DIR: dir },
    cleanup: keep ? kept(dir) : () => rm(dir, { recursive: true, force: true }),
  };
}

/** One HTTP request with a bearer key; the answer's status and text. `agent: false` opens a fresh connection. */

export function httpRequest(
  url: string,
  opts: { key: string; method?: string; agent?: http.Agent | false; contentType?: string; body?: string | Readable },
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { Authorization: `Bearer ${opts.key}` };
    if (opts.body !== undefined) headers["Content-Type"] = opts.contentType ?? "application/json";
    const req = http.request(url, { method: opts.method ?? "GET", agent: opts.agent, headers }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d) => {
        text += d;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on("error", reject);
    if (opts.body === undefined || typeof opts.body === "string") req.end(opts.body);
    else opts.body.pipe(req);
  });
}

/** CPU time (user + system) a process has used so far, in seconds; 0 once it is gone. */
export function cpuSeconds(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/** PostgreSQL's own processes on this machine that serve every database: WAL writer, checkpointer, ... */
function postgresBackgroundPids(): number[] {
  const pids: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, "utf8");
      if (/^postgres: .*(walwriter|checkpointer|background writer|autovacuum|logical replication launcher)/.test(cmd)) {
        pids.push(Number(d));
      }
    } catch {
      // gone
    }
  }
  return pids;
}

export interface CpuSplit {
  /** The Tally process (with the embedded engine this includes the database). */
  tally: number;
  /** Server backends connected to the benchmark database. */
  pgBackends: number;
  /** The server's shared background processes (WAL writer, checkpointer, bgwriter, autovacuum). */
  pgBackground: number;
  /** This process: the load generator (or the writers, in database-only phases). */
  self: number;
}

/**
 * CPU seconds used between start and stop, by Tally, by PostgreSQL (only if it runs on this machine: its processes
 * are read from /proc; backends are those of `database`) and by this process.
 */
export async function cpuMeter(tallyPid: number | undefined, admin: pg.Client | undefined) {
  const backends = async () => {
    if (!admin) return [] as number[];
    const { rows } = await admin.query<{ pid: number }>(
      "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
    );
    return rows.map((r) => r.pid);
  };
  const sum = (pids: number[], at: Map<number, number>) => pids.reduce((s, p) => s + (at.get(p) ?? 0), 0);
  const snapshot = (pids: number[]) => new Map(pids.map((p) => [p, cpuSeconds(p)]));
  const startBackends = snapshot(await backends());
  const background = postgresBackgroundPids();
  const startBackground = snapshot(background);
  const startTally = tallyPid ? cpuSeconds(tallyPid) : 0;
  const startSelf = process.cpuUsage();
  return {
    async stop(): Promise<CpuSplit> {
      const self = process.cpuUsage(startSelf);
      const pids = await backends();
      const endBackends = snapshot(pids);
      return {
        tally: tallyPid ? cpuSeconds(tallyPid) - startTally : 0,
        pgBackends: sum(pids, endBackends) - sum(pids, startBackends),
        pgBackground: sum(background, snapshot(background)) - sum(background, startBackground),
        self: (self.user + self.system) / 1e6,
      };
    },
  };
}

/** WAL written by the whole server between start and stop, in bytes (undefined without a server). */
export async function walMeter(admin: pg.Client | undefined) {
  const lsn = async () =>
    admin ? ((await admin.query<{ lsn: string }>("SELECT pg_current_wal_lsn()::text AS lsn")).rows[0]?.lsn ?? "") : "";
  const start = await lsn();
  return {
    async stop(): Promise<number | undefined> {
      if (!admin) return undefined;
      const { rows } = await admin.query<{ bytes: string }>(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::text AS bytes",
        [start],
      );
      return Number(rows[0]?.bytes);
    },
  };
}

/** A cheap deterministic PRNG (mulberry32) so runs are comparable. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** How long `fn` took, in ms, and its result. */
export async function time<T>(fn: () => Promise<T>): Promise<[number, T]> {
  const t0 = performance.now();
  const v = await fn();
  return [performance.now() - t0, v];
}

/** The head of a latency table: Tally over HTTP next to the same answers computed from raw events. */
export const LATENCY_HEAD = ["query", "Tally p50", "p95", "p99", "raw events p50", "p95", "p99", "raw p95 / Tally p95"];

/** One row under LATENCY_HEAD, from the milliseconds of each request. */
export function latencyRow(name: string, tally: number[], raw: number[]): string[] {
  const f = (v: number) => `${v.toFixed(2)} ms`;
  const ps = (xs: number[]) => [50, 95, 99].map((p) => f(percentile(xs, p)));
  return [name, ...ps(tally), ...ps(raw), `${(percentile(raw, 95) / percentile(tally, 95)).toFixed(1)}×`];
}

/** A question asked of Tally over HTTP, with the answer computed from raw events and how long that took. */
export interface Question {
  kind: string;
  path: string;
  answer: string;
  rawMs: number;
  read(body: string): string;
}

/** Asks every question of each kind through `ask` (the body of a 200), timed; a latency row per kind, mismatches. */
export async function askAll(questions: Question[], kinds: string[], ask: (q: Question) => Promise<string>) {
  const rows: string[][] = [];
  let mismatches = 0;
  for (const kind of kinds) {
    const tallyMs: number[] = [];
    const rawMs: number[] = [];
    for (const question of questions.filter((x) => x.kind === kind)) {
      const [ms, body] = await time(() => ask(question));
      tallyMs.push(ms);
      rawMs.push(question.rawMs);
      const got = question.read(body);
      if (got === question.answer) continue;
      if (mismatches++ < 3)
        console.log(`  MISMATCH ${question.path}\n    raw:   ${question.answer}\n    tally: ${got}`);
    }
    rows.push(latencyRow(kind, tallyMs, rawMs));
  }
  return { rows, mismatches };
}

/**
 * Loads `total` events with COPY into usage_events, `columns` in that order, 200,000 per transaction: `row(i)` gives
 * event i's cells (its id should derive from i). `onBatch` hears how many are loaded after each transaction.
 */
export async function copyEvents(
  db: Db,
  total: number,
  columns: readonly string[],
  row: (i: number) => (string | null)[],
  onBatch?: (loaded: number) => void,
): Promise<void> {
  const BATCH = 200_000;
  for (let done = 0; done < total; done += BATCH) {
    const n = Math.min(BATCH, total - done);
    await db.transaction((tx) =>
      tx.copyIn(
        { table: "usage_events", columns },
        (function* () {
          let chunk = "";
          for (let i = done; i < done + n; i++) {
            chunk += copyRow(row(i));
            if (chunk.length > 1_000_000) {
              yield chunk;
              chunk = "";
            }
          }
          if (chunk) yield chunk;
        })(),
      ),
    );
    onBatch?.(done + n);
  }
}

/**
 * `clients` clients post `bodies` (JSON batches) to `${url}/v1/events` one after the other; with `retryEvery`,
 * every retryEvery-th send repeats the client's last acknowledged body, which must store nothing. Every batch's
 * latency (ms), the events posted (accepted + duplicates) and accepted.
 */
export async function postBatches(
  url: string,
  key: string,
  agent: http.Agent,
  bodies: string[],
  opts: { clients: number; retryEvery?: number | undefined },
): Promise<{ posted: number; accepted: number; latencies: number[] }> {
  const latencies: number[] = [];
  let next = 0;
  let sends = 0;
  let posted = 0;
  let accepted = 0;
  const { retryEvery } = opts;
  await Promise.all(
    Array.from({ length: opts.clients }, async () => {
      let acknowledged: string | undefined;
      while (next < bodies.length) {
        const retry = retryEvery !== undefined && acknowledged !== undefined && ++sends % retryEvery === 0;
        const body = retry ? (acknowledged as string) : (bodies[next++] as string);
        const t0 = performance.now();
        const res = await httpRequest(`${url}/v1/events`, { key, method: "POST", agent, body });
        latencies.push(performance.now() - t0);
        if (res.status !== 202) throw new Error(`ingest failed: ${res.status} ${res.text.slice(0, 300)}`);
        const r = JSON.parse(res.text) as { accepted: number; duplicates: number };
        if (retry && r.accepted !== 0) throw new Error(`a retry stored ${r.accepted} events again`);
        posted += r.accepted + r.duplicates;
        accepted += r.accepted;
        acknowledged = body;
      }
    }),
  );
  return { posted, accepted, latencies };
}
