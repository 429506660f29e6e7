// Graceful shutdown of a real process: SIGTERM while batches are streaming in → the in-flight batches commit and
// are answered 202, requests that arrive after the signal get 503 with Retry-After, and the process exits 0 within
// the shutdown timeout; what was acknowledged is stored. On both engines.
// And the shutdown always ends (embedded engine, the built `node dist/src/main.js` in its own process group): when
// the reader of its stdout/stderr pipes goes away together with the SIGTERM (a supervisor or test harness exiting),
// when something it waits for never ends (TALLY_SHUTDOWN_TIMEOUT), and on a second signal.
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.js";
import { openDatabase } from "../../src/db/open.js";
import { BACKENDS, createServerDatabase } from "../helpers/databases.js";
import { until } from "../helpers/eventually.js";
import { buildDist, type DetachedTally, slowUpload, spawnDetachedTally, spawnTally } from "../helpers/process.js";
import { freePort } from "./helpers.js";

const KEY = "chaos-admin-key-0123456789abcdef";
const TIMEOUT_MS = 10_000;

describe.each(BACKENDS)("graceful shutdown on %s", (backend) => {
  const cleanups: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  it("when SIGTERM arrives during ingest, then in-flight batches commit and are answered, new ones get 503, and it exits 0", async () => {
    const port = await freePort();
    const env: Record<string, string> = {
      TALLY_ADMIN_KEY: KEY,
      PORT: String(port),
      LOG_LEVEL: "warn",
      TALLY_SHUTDOWN_TIMEOUT_MS: String(TIMEOUT_MS),
    };
    let open: () => ReturnType<typeof openDatabase>;
    if (backend === "postgres") {
      const server = await createServerDatabase();
      cleanups.push(server.drop);
      env.DATABASE_URL = server.url;
      open = () => openDatabase({ databaseUrl: server.url, dataDir: "unused" });
    } else {
      const dir = await mkdtemp(join(tmpdir(), "tally-shutdown-"));
      cleanups.push(() => rm(dir, { recursive: true, force: true }));
      env.TALLY_DATA_DIR = dir;
      open = () => openDatabase({ dataDir: dir });
    }
    const tally = await spawnTally(env, 120_000);
    const meter = await fetch(`${tally.url}/v1/meters/calls`, {
      method: "PUT",
      headers: { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json" },
      body: JSON.stringify({ name: "Calls", unit: "call", aggregation: "sum" }),
    });
    expect(meter.status).toBe(201);

    const uploads = ["a", "b", "c"].map((tag) =>
      slowUpload(`http://127.0.0.1:${port}`, { key: KEY, customer: "shutdown", tag, lines: 200, ms: 4_000 }),
    );
    // Each upload is under way (a quarter sent, about 3 s to go) when the signal comes.
    await until(
      () => Math.min(...uploads.map((u) => u.written())),
      (n) => n >= 50,
    );
    const signalled = Date.now();
    tally.child.kill("SIGTERM");
    // (Connection: close — a kept-alive socket would be closed under the next request while Tally drains.)
    await until(
      async () => (await fetch(`${tally.url}/readyz`, { headers: { Connection: "close" } })).status,
      (status) => status === 503,
      { message: "/readyz 503 after SIGTERM" },
    );
    // A request after the signal: refused politely, with a hint to retry (elsewhere or later).
    const late = await fetch(`${tally.url}/v1/events`, {
      method: "POST",
      headers: { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json", Connection: "close" },
      body: JSON.stringify({ events: [{ id: "late", customer: "shutdown", meter: "calls" }] }),
    });
    expect(late.status).toBe(503);
    expect(late.headers.get("retry-after")).toBeTruthy();
    expect(((await late.json()) as { code: string }).code).toBe("shutting_down");

    const answers = await Promise.all(uploads.map((u) => u.answer));
    for (const a of answers) expect(a, a.body).toMatchObject({ status: 202 });
    const accepted = answers.reduce((n, a) => n + (JSON.parse(a.body) as { accepted: number }).accepted, 0);
    const code = await tally.exited;
    const exitedAfter = Date.now() - signalled;
    expect(code).toBe(0);
    expect(exitedAfter).toBeLessThan(TIMEOUT_MS + 2_000);

    const { db } = await open();
    try {
      const { rows } = await db.query<{ n: string }>("SELECT count(*)::text AS n FROM usage_events", []);
      expect(rows[0]?.n).toBe(String(accepted));
      expect(accepted).toBe(600);
      console.log(
        `[shutdown ${backend}] 3 batches in flight at SIGTERM: all 202 (${accepted} events stored); a late request got 503; exit 0 after ${exitedAfter} ms`,
      );
    } finally {
      await db.close();
    }
  });
});

/** A request the server has started handling (it answered 100 Continue) whose body never ends. */
async function neverEndingUpload(port: number): Promise<http.ClientRequest> {
  const req = http.request({
    host: "127.0.0.1",
    port,
    method: "POST",
    path: "/v1/events",
    headers: { Authorization: `Bearer ${KEY}`, "Content-Type": "application/x-ndjson", Expect: "100-continue" },
  });
  req.on("error", () => {}); // the server goes away mid-request: expected
  req.flushHeaders();
  await once(req, "continue");
  return req;
}

describe("shutdown always ends (embedded engine, own process group)", () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  beforeAll(async () => {
    await buildDist();
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function start(env: Record<string, string> = {}): Promise<{ tally: DetachedTally; port: number }> {
    const dir = await mkdtemp(join(tmpdir(), "tally-shutdown-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const port = await freePort();
    const tally = spawnDetachedTally({ TALLY_DATA_DIR: dir, TALLY_ADMIN_KEY: KEY, PORT: String(port), ...env });
    cleanups.push(() => tally.kill());
    await tally.waitFor(/Tally listening/, 120_000);
    return { tally, port };
  }

  it("when TALLY_SHUTDOWN_TIMEOUT is set, then it is an ISO 8601 duration; bad values are refused with the others", () => {
    expect(loadConfig({}).TALLY_SHUTDOWN_TIMEOUT).toBe(30_000);
    expect(loadConfig({ TALLY_SHUTDOWN_TIMEOUT: "PT1.5S" }).TALLY_SHUTDOWN_TIMEOUT).toBe(1_500);
    expect(loadConfig({ TALLY_SHUTDOWN_TIMEOUT: "P1DT2H3M4S" }).TALLY_SHUTDOWN_TIMEOUT).toBe(93_784_000);
    // One parser for every duration setting (src/duration.ts): designators are read case-insensitively.
    expect(loadConfig({ TALLY_SHUTDOWN_TIMEOUT: "pt30s" }).TALLY_SHUTDOWN_TIMEOUT).toBe(30_000);
    for (const bad of ["30", "30s", "PT", "P", "P1M", "PT0S", "P30D"]) {
      expect(() => loadConfig({ TALLY_SHUTDOWN_TIMEOUT: bad, PORT: "x" }), bad).toThrow(
        /PORT[\s\S]*TALLY_SHUTDOWN_TIMEOUT: /,
      );
    }
  });

  it("when the group gets SIGTERM and the reader of its stdout/stderr goes away at once, then it exits 0 promptly", async () => {
    const { tally } = await start({ TALLY_SHUTDOWN_TIMEOUT: "PT10S" });
    process.kill(-tally.pid, "SIGTERM");
    tally.destroyPipes();
    const ms = await tally.goneWithin(10_000);
    expect(ms, "still running 10 s after SIGTERM").toBeDefined();
    expect(await tally.exited).toBe(0);
    console.log(`[shutdown] SIGTERM + pipes closed at once: process group gone after ${ms} ms, exit 0`);
  });

  it("when the shutdown is stuck on a request that never ends, then it exits 1 at TALLY_SHUTDOWN_TIMEOUT and says so", async () => {
    const { tally, port } = await start({ TALLY_SHUTDOWN_TIMEOUT: "PT1S", LOG_LEVEL: "info" });
    const req = await neverEndingUpload(port);
    cleanups.push(() => {
      req.destroy();
    });
    const signalled = Date.now();
    process.kill(-tally.pid, "SIGTERM");
    const code = await tally.exited;
    const ms = Date.now() - signalled;
    expect(code).toBe(1);
    expect(ms).toBeGreaterThanOrEqual(1_000);
    expect(await tally.goneWithin(5_000)).toBeDefined();
    expect(ms).toBeLessThan(5_000);
    expect(tally.output()).toMatch(/"in_flight":1,"msg":"shutting down/);
    expect(tally.output()).toMatch(/"level":50,.*"msg":"shutdown did not finish within TALLY_SHUTDOWN_TIMEOUT/);
    console.log(`[shutdown] stuck request, TALLY_SHUTDOWN_TIMEOUT=PT1S: exit 1 after ${ms} ms`);
  });

  it("when a second SIGTERM comes during a stuck shutdown, then it exits 1 at once", async () => {
    const { tally, port } = await start();
    const req = await neverEndingUpload(port);
    cleanups.push(() => {
      req.destroy();
    });
    process.kill(-tally.pid, "SIGTERM");
    await tally.waitFor(/shutting down: finishing in-flight requests/, 10_000);
    const second = Date.now();
    process.kill(-tally.pid, "SIGTERM");
    const code = await tally.exited;
    const ms = Date.now() - second;
    expect(code).toBe(1);
    expect(ms).toBeLessThan(2_000);
    console.log(`[shutdown] second SIGTERM during a stuck shutdown: exit 1 after ${ms} ms`);
  });
});
