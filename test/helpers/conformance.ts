// The clients' conformance suite: scenarios as data (clients/conformance/scenarios.json), the events each scenario
// tracks, the TypeScript runner (in process), the Python runner (a child process speaking JSON on stdin/stdout), and
// the checks every runner's result must pass — against Tally's receipts and stored events, not the client's word.
import { spawn, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { expect } from "vitest";
import {
  DeliveryError,
  type Rejection,
  TallyClient,
  type TallyClientOptions,
} from "../../clients/typescript/src/index.js";
import type { Tally } from "../../src/tally.js";
import { eventually } from "./eventually.js";
import type { Fault, IngestRequest } from "./faultProxy.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

interface Scenario {
  name: string;
  description: string;
  client: Record<string, number | string>;
  events: {
    count: number;
    given_ids?: boolean;
    prestore?: number[];
    overrides?: Record<string, Record<string, unknown>>;
  };
  await_sent?: number;
  server: Fault[];
  expect: {
    rejected?: number[];
    track_errors?: number[];
    close?: "ok" | "undelivered";
    undelivered?: number;
    stored_count?: number;
    metrics?: Record<string, number>;
    metrics_min?: Record<string, number>;
    min_requests?: number;
    formats?: IngestRequest["format"][];
    retry_gap_ms?: number;
    max_buffered?: number;
  };
}

interface Suite {
  meter: string;
  defaults: Record<string, number | string>;
  scenarios: Scenario[];
}

export const suite = JSON.parse(
  readFileSync(new URL("../../clients/conformance/scenarios.json", import.meta.url), "utf8"),
) as Suite;

export interface ScenarioEvent {
  customer: string;
  meter: string;
  value: number | string;
  id?: string;
}

/** What a runner is given (as JSON on stdin for other languages). */
export interface RunnerInput {
  url: string;
  api_key: string;
  /** Client options (snake_case; `_ms` in milliseconds): the suite's defaults, then the scenario's. */
  options: Record<string, number | string>;
  events: ScenarioEvent[];
  await_sent: number | null;
}

/** What a runner reports: per event its id (or the error of its track call), what was refused, close's outcome. */
export interface RunnerOutput {
  tracked: { id: string | null; error: string | null }[];
  rejected: { id: string; status: number; code: string }[];
  metrics: Record<string, number>;
  close: { ok: boolean; undelivered: number; error: string | null };
  max_buffered: number;
  await_sent_reached: boolean | null;
}

export function scenarioEvents(s: Scenario, customer: string, meter: string): ScenarioEvent[] {
  return Array.from({ length: s.events.count }, (_, i) => ({
    customer,
    meter,
    value: i + 1,
    ...(s.events.given_ids ? { id: `e-${i}` } : {}),
    ...(s.events.overrides?.[String(i)] ?? {}),
  }));
}

const camel = (k: string) => k.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

export async function runTypeScript(input: RunnerInput): Promise<RunnerOutput> {
  const rejected: RunnerOutput["rejected"] = [];
  const options = Object.fromEntries(Object.entries(input.options).map(([k, v]) => [camel(k), v]));
  const client = new TallyClient({
    ...(options as Partial<TallyClientOptions>),
    url: input.url,
    apiKey: input.api_key,
    onRejected: (rs: Rejection[]) => {
      for (const r of rs) rejected.push({ id: r.event.id, status: r.status, code: r.code });
    },
  });
  const tracked: RunnerOutput["tracked"] = [];
  let maxBuffered = 0;
  for (const e of input.events) {
    try {
      tracked.push({ id: await client.track(e), error: null });
    } catch (err) {
      tracked.push({ id: null, error: (err as Error).name });
    }
    maxBuffered = Math.max(maxBuffered, client.metrics().buffered);
  }
  let reached: boolean | null = null;
  if (input.await_sent !== null) {
    const want = input.await_sent;
    reached = await eventually(
      () => {
        if (client.metrics().sent < want) throw new Error(`sent ${client.metrics().sent} of ${want}`);
        return true;
      },
      { timeout: 10_000 },
    ).catch(() => false);
  }
  const close: RunnerOutput["close"] = { ok: true, undelivered: 0, error: null };
  try {
    await client.close();
  } catch (err) {
    close.ok = false;
    close.error = (err as Error).message;
    if (err instanceof DeliveryError) close.undelivered = err.undelivered.length;
  }
  return {
    tracked,
    rejected,
    metrics: { ...client.metrics() },
    close,
    max_buffered: maxBuffered,
    await_sent_reached: reached,
  };
}

/** The interpreter of the Python part: TEST_PYTHON (e.g. python3.9), else python3. */
export const PYTHON = process.env.TEST_PYTHON ?? "python3";

/** The interpreter when it is Python 3.9 or newer, else why not. */
export function findPython(): { python: string } | { missing: string } {
  const r = spawnSync(PYTHON, ["-c", "import sys; print('%d.%d' % sys.version_info[:2])"], { encoding: "utf8" });
  if (r.error || r.status !== 0) return { missing: `${PYTHON} not found` };
  const [major, minor] = r.stdout.trim().split(".").map(Number) as [number, number];
  if (major < 3 || (major === 3 && minor < 9)) return { missing: `${PYTHON} is ${r.stdout.trim()} (needs ≥ 3.9)` };
  return { python: PYTHON };
}

/** Runs `<PYTHON> <args>` in clients/python without blocking this process (the proxy and Tally live here). */
export function runPython(
  args: string[],
  stdin = "",
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, args, { cwd: `${ROOT}clients/python`, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => {
      stdout += d;
    });
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(stdin);
  });
}

export async function runPythonScenario(mode: "sync" | "async", input: RunnerInput): Promise<RunnerOutput> {
  const r = await runPython(["conformance_runner.py", "--mode", mode], JSON.stringify(input));
  if (r.code !== 0) throw new Error(`conformance_runner.py exited with ${r.code}:\n${r.stderr}\n${r.stdout}`);
  return JSON.parse(r.stdout) as RunnerOutput;
}

/** Every check of a scenario: the client's report, then Tally's receipts and stored events. */
export async function verify(
  s: Scenario,
  events: ScenarioEvent[],
  out: RunnerOutput,
  ctx: { tally: Tally; log: IngestRequest[]; customer: string; receipt: (id: string) => Promise<number> },
): Promise<void> {
  const x = s.expect;
  const failed = out.tracked.flatMap((t, i) => (t.error ? [i] : []));
  expect(failed, "track calls that failed").toEqual(x.track_errors ?? []);
  expect(out.close.ok, `close: ${out.close.error}`).toBe((x.close ?? "ok") === "ok");
  if (x.undelivered !== undefined) expect(out.close.undelivered).toBe(x.undelivered);
  if (s.await_sent !== undefined) expect(out.await_sent_reached, "sent before close()").toBe(true);

  const idOf = (i: number) => out.tracked[i]?.id as string;
  const rejectedIds = (x.rejected ?? []).map(idOf);
  expect(out.rejected.map((r) => r.id).sort(), "events reported refused").toEqual([...rejectedIds].sort());
  for (const r of out.rejected) expect([400, 422]).toContain(r.status);

  const ids = out.tracked.map((t) => t.id).filter((id): id is string => id !== null);
  expect(new Set(ids).size, "ids are unique").toBe(ids.length);
  const mustBeStored = out.close.ok
    ? out.tracked.flatMap((t, i) => (t.id && !rejectedIds.includes(t.id) ? [i] : []))
    : [];
  for (const i of mustBeStored) {
    expect(await ctx.receipt(idOf(i)), `receipt of event ${i} (${idOf(i)})`).toBe(200);
  }
  for (const id of rejectedIds) expect(await ctx.receipt(id), `receipt of refused ${id}`).toBe(404);
  const { rows } = await ctx.tally.ctx.db.query<{ n: string; total: string }>(
    "SELECT count(*) AS n, coalesce(sum(value), 0)::text AS total FROM usage_events WHERE customer_id = $1",
    [ctx.customer],
  );
  const stored = Number(rows[0]?.n);
  if (x.stored_count !== undefined) expect(stored, "events stored").toBe(x.stored_count);
  if (out.close.ok) {
    // Nothing lost, nothing doubled: exactly the acknowledged events, each once, with their values.
    expect(stored, "events stored").toBe(mustBeStored.length);
    const total = mustBeStored.reduce((sum, i) => sum + Number(events[i]?.value), 0);
    expect(Number(rows[0]?.total), "sum of stored values").toBe(total);
  }

  for (const [k, v] of Object.entries(x.metrics ?? {})) expect(out.metrics[k], `metrics.${k}`).toBe(v);
  for (const [k, v] of Object.entries(x.metrics_min ?? {}))
    expect(out.metrics[k], `metrics.${k}`).toBeGreaterThanOrEqual(v);
  expect(out.metrics.buffered, "buffered after close").toBe(out.close.ok ? 0 : out.close.undelivered);
  if (x.max_buffered !== undefined) expect(out.max_buffered).toBeLessThanOrEqual(x.max_buffered);
  if (x.min_requests !== undefined) expect(ctx.log.length, "ingest requests").toBeGreaterThanOrEqual(x.min_requests);
  if (x.formats) for (const r of ctx.log) expect(x.formats).toContain(r.format);
  if (x.retry_gap_ms !== undefined) {
    ctx.log.forEach((r, i) => {
      const next = ctx.log[i + 1];
      if (r.action === "respond" && next)
        expect(next.at - r.at, "wait after Retry-After").toBeGreaterThanOrEqual(x.retry_gap_ms as number);
    });
  }
}
