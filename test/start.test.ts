// `npm start` as a user runs it: a real process on the embedded engine (first start, restart on the same
// data) and on the real PostgreSQL, stopped with SIGTERM; and a bad configuration refused at once.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { createServerDatabase } from "./helpers/databases.js";
import { runTallyExpectingFailure, spawnTally, type TallyProcess } from "./helpers/process.js";

async function readyz(url: string) {
  const res = await fetch(`${url}/readyz`);
  return { status: res.status, body: (await res.json()) as { engine: string } };
}

describe("start-up as a process", () => {
  it("when started on an empty data directory, then it prints an admin key that works, and a restart reuses the data", async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "tally-data-"));
    const running: TallyProcess[] = [];
    onTestFinished(async () => {
      for (const p of running) await p.stop();
      await rm(dataDir, { recursive: true, force: true });
    });
    const first = await spawnTally({ TALLY_DATA_DIR: dataDir });
    running.push(first);
    const key = /^\s+(tally_\S+)$/m.exec(first.stdout())?.[1];
    expect(key).toBeDefined();
    expect(await readyz(first.url)).toEqual({ status: 200, body: { status: "ready", engine: "timescale" } });
    const put = await fetch(`${first.url}/v1/meters/calls`, {
      method: "PUT",
      headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
      body: JSON.stringify({ name: "Calls", unit: "call", aggregation: "count" }),
    });
    expect(put.status).toBe(201);
    expect(first.stdout()).toMatch(/"engine":"timescale".*"reason":"detected: timescaledb/);
    expect(await first.stop()).toBe(0);
    expect(first.stdout()).not.toMatch(/"msg":"[^"]*tally_/); // the key is never in a log line

    const second = await spawnTally({ TALLY_DATA_DIR: dataDir });
    running.push(second);
    expect(second.stdout()).not.toMatch(/admin API key was created/);
    expect((await readyz(second.url)).status).toBe(200);
    const meters = await fetch(`${second.url}/v1/meters`, { headers: { Authorization: `Bearer ${key}` } });
    expect(((await meters.json()) as { data: { key: string }[] }).data.map((m) => m.key)).toEqual(["calls"]);
    expect(await second.stop()).toBe(0);
  }, 240_000);

  it("when DATABASE_URL points at PostgreSQL that cannot give TimescaleDB, then it runs the portable engine and says why", async () => {
    const db = await createServerDatabase();
    try {
      const p = await spawnTally({ DATABASE_URL: db.url, TALLY_ADMIN_KEY: "env-admin-key-0123456789" });
      expect(await readyz(p.url)).toEqual({ status: 200, body: { status: "ready", engine: "postgres" } });
      // Why depends on the server (no extension at all, installed but not preloaded, another license): the reason
      // is there, whatever PostgreSQL's wording.
      const choice = p
        .stdout()
        .split("\n")
        .filter((l) => l.includes('"msg":"database engine: postgres"'))
        .map((l) => JSON.parse(l) as { engine: string; reason: string });
      expect(choice).toEqual([
        {
          ...choice[0],
          engine: "postgres",
          reason: expect.stringMatching(/\S.*; using the portable PostgreSQL engine$/),
        },
      ]);
      expect(p.stdout()).not.toMatch(/admin API key was created/);
      const res = await fetch(`${p.url}/v1/meters`, { headers: { Authorization: "Bearer env-admin-key-0123456789" } });
      expect(res.status).toBe(200);
      expect(await p.stop()).toBe(0);
    } finally {
      await db.drop();
    }
  }, 150_000);

  it("when TALLY_ENGINE=timescale is forced on a server without it, then start-up fails with the reason", async () => {
    const db = await createServerDatabase();
    try {
      const { code, stderr } = await runTallyExpectingFailure({ DATABASE_URL: db.url, TALLY_ENGINE: "timescale" });
      expect(code).toBe(1);
      expect(stderr).toMatch(/TALLY_ENGINE=timescale, but \S/);
    } finally {
      await db.drop();
    }
  });

  it("when several variables are invalid, then every problem is reported together and it exits 1", async () => {
    const { code, stderr } = await runTallyExpectingFailure({
      PORT: "http",
      TALLY_ENGINE: "mysql",
      TALLY_CRON_REFRESH: "every minute",
      DATABASE_URL: "mysql://x",
    });
    expect(code).toBe(1);
    for (const name of ["PORT", "TALLY_ENGINE", "TALLY_CRON_REFRESH", "DATABASE_URL"]) expect(stderr).toContain(name);
  });
});
