// `npm start` as a user runs it: a real process on the embedded engine (first start, restart on the same
// data) and on the real PostgreSQL, stopped with SIGTERM; and a bad configuration refused at once. And `npm start`
// itself under a process manager (SIGTERM to npm alone) and in a terminal (Ctrl-C: SIGINT to its process group):
// Tally gets the signal once, shuts down gracefully, and no process is left.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it, onTestFinished } from "vitest";
import { createServerDatabase } from "./helpers/databases.js";
import { until } from "./helpers/eventually.js";
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

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe("npm start", () => {
  it.each([
    { how: "a process manager sends SIGTERM to npm alone", host: "127.0.0.1", signal: "SIGTERM", group: false },
    { how: "Ctrl-C sends SIGINT to npm's whole process group", host: "0.0.0.0", signal: "SIGINT", group: true },
  ] as const)(
    "when $how, then Tally gets it once, stops gracefully, and no process is left",
    async (c) => {
      const dataDir = await mkdtemp(join(tmpdir(), "tally-npm-start-"));
      const npm = spawn("npm", ["start"], {
        cwd: fileURLToPath(new URL("..", import.meta.url)),
        env: {
          PATH: process.env.PATH ?? "",
          HOME: process.env.HOME ?? tmpdir(),
          PORT: "0",
          HOST: c.host,
          TALLY_DATA_DIR: dataDir,
          TALLY_ADMIN_KEY: "npm-start-admin-key-0123456789",
          LOG_LEVEL: "info",
        },
        stdio: ["ignore", "pipe", "pipe"],
        detached: true, // its own process group, as a terminal's foreground job or a supervisor's child
      });
      const npmPid = npm.pid as number;
      let out = "";
      npm.stdout.on("data", (d) => {
        out += d;
      });
      npm.stderr.on("data", (d) => {
        out += d;
      });
      const exited = once(npm, "exit").then(([code]) => code as number | null);
      let tallyPid: number | undefined;
      onTestFinished(async () => {
        for (const pid of [npmPid, tallyPid]) if (pid && alive(-pid)) process.kill(-pid, "SIGKILL");
        await rm(dataDir, { recursive: true, force: true });
      });
      // npm start builds first: minutes on a busy machine.
      const started = await until(
        async () => /Tally is running at (http:\/\/\S+)/.exec(out)?.[1],
        (url) => url !== undefined || npm.exitCode !== null,
        { timeout: 240_000 },
      );
      expect(started.value, out).toBeDefined();
      const url = started.value as string;
      const listening = JSON.parse(out.split("\n").find((l) => l.includes('"msg":"Tally listening on')) as string);
      tallyPid = listening.pid as number;
      expect(tallyPid).not.toBe(npmPid);
      expect((await fetch(`${url}/readyz`)).status).toBe(200);
      // It says what it listens on, and where to reach it from here.
      expect(listening.listening).toMatch(new RegExp(`^http://${c.host.replaceAll(".", "\\.")}:\\d+$`));
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      if (c.host === "0.0.0.0") expect(out).toMatch(/listens on every network interface/);

      process.kill(c.group ? -npmPid : npmPid, c.signal);
      expect(await exited, out).toBe(0);
      const gone = await until(
        async () => [npmPid, tallyPid as number].filter((pid) => alive(pid) || alive(-pid)),
        (left) => left.length === 0,
        { timeout: 30_000 },
      );
      expect(gone.value).toEqual([]);
      expect(out.match(/"msg":"signal received"/g)).toHaveLength(1);
      expect(out).toContain(`"signal":"${c.signal}","msg":"signal received"`);
      expect(out).toMatch(/"msg":"stopped"/);
      expect(out).not.toMatch(/second signal|did not finish/);
    },
    300_000,
  );
});
