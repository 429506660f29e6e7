// Shared by the benchmarks: run the built Tally as a child process, watch its RSS, percentiles, tables.
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import http from "node:http";
import type { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import pg from "pg";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

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

/** Starts dist/src/main.js (run `npm run build` first; the bench scripts do). */
export async function startTally(env: Record<string, string>): Promise<TallyChild> {
  const child = spawn(process.execPath, ["dist/src/main.js"], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "", PORT: "0", HOST: "127.0.0.1", LOG_LEVEL: "warn", ...env },
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`Tally did not start:\n${out}`)), 60_000);
    child.stdout?.on("data", (d) => {
      out += d;
      const m = /Tally is running at (\S+) \(engine: (\w+)\)/.exec(out);
      if (m?.[1]) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on("exit", (code) => reject(new Error(`Tally exited with ${code}:\n${out}`)));
  });
  const engine = /\(engine: (\w+)\)/.exec(out)?.[1] ?? "?";
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
