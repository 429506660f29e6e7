// Several Tally processes starting at once on one fresh database: every one comes up on the same engine and each
// migration is applied once. The TimescaleDB path's race (the loser of CREATE EXTENSION gets unique_violation) is
// shown on the real server with another extension, and through a scripted connection for timescaledb itself.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadMigrations } from "../src/db/migrate.js";
import { chooseEngine, ensureExtension } from "../src/db/open.js";
import type { Queryable, QueryResult } from "../src/db/types.js";
import { createServerDatabase } from "./helpers/databases.js";
import { buildDist, type DetachedTally, spawnDetachedTally } from "./helpers/process.js";

const KEY = "scale-start-admin-key-0123456789";

async function connect(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  return c;
}

describe("processes starting at once (PostgreSQL)", () => {
  beforeAll(async () => {
    await buildDist();
  }, 240_000);

  it("when four processes start together on an empty database, then all run the same engine and each migration is applied once", async () => {
    const database = await createServerDatabase();
    const processes: DetachedTally[] = [];
    try {
      for (let i = 0; i < 4; i++)
        processes.push(spawnDetachedTally({ DATABASE_URL: database.url, TALLY_ADMIN_KEY: KEY, TALLY_JOBS: "off" }));
      await Promise.all(processes.map((p) => p.waitFor(/Tally is running at/, 120_000)));
      const engines = processes.map((p) => /\(engine: (\w+)\)/.exec(p.output())?.[1]);
      expect(engines).toEqual(["postgres", "postgres", "postgres", "postgres"]);
      // Each process logs what it applied: together, every file once.
      const applied = processes.flatMap((p) =>
        p
          .output()
          .split("\n")
          .filter((l) => l.includes('"msg":"migrations done"'))
          .flatMap((l) => (JSON.parse(l) as { applied: string[] }).applied),
      );
      const files = (await loadMigrations("postgres")).map((f) => f.name);
      expect(applied.sort()).toEqual([...files].sort());
      const c = await connect(database.url);
      try {
        const { rows } = await c.query<{ name: string; engine: string }>(
          "SELECT name, engine FROM tally_migrations ORDER BY name",
        );
        expect(rows.map((r) => r.name)).toEqual([...files].sort());
        expect(new Set(rows.map((r) => r.engine))).toEqual(new Set(["postgres"]));
      } finally {
        await c.end();
      }
      for (const p of processes) {
        const ready = await fetch(`${/Tally is running at (\S+)/.exec(p.output())?.[1]}/readyz`);
        expect(ready.status).toBe(200);
      }
      for (const p of processes) process.kill(p.pid, "SIGTERM");
      expect(await Promise.all(processes.map((p) => p.exited))).toEqual([0, 0, 0, 0]);
    } finally {
      for (const p of processes) p.kill();
      await database.drop();
    }
  }, 240_000);
});

describe("CREATE EXTENSION racing another session (PostgreSQL)", () => {
  let database: Awaited<ReturnType<typeof createServerDatabase>>;
  beforeAll(async () => {
    database = await createServerDatabase();
  });
  afterAll(() => database.drop());

  it("when another session creates the extension while we wait, then the plain statement fails with 23505 and ensureExtension succeeds", async () => {
    // The first session holds its CREATE EXTENSION uncommitted; the second waits on pg_extension's unique index
    // and, once the first commits, fails with unique_violation in spite of IF NOT EXISTS.
    const race = async (second: (c: pg.Client) => Promise<unknown>, extension: string) => {
      const first = await connect(database.url);
      const other = await connect(database.url);
      const otherPid = (await other.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]?.pid;
      try {
        await first.query("BEGIN");
        await first.query(`CREATE EXTENSION IF NOT EXISTS ${extension}`);
        const waiting = second(other).then(
          () => "ok",
          (err: { code?: string }) => `error ${err.code}`,
        );
        // The second session is blocked on the first's lock before the first commits.
        for (;;) {
          const { rows } = await first.query<{ n: number }>(
            "SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'",
            [otherPid],
          );
          if (rows[0]?.n) break;
          await new Promise((r) => setTimeout(r, 20));
        }
        await first.query("COMMIT");
        return await waiting;
      } finally {
        await first.end();
        await other.end();
      }
    };
    expect(await race((c) => c.query("CREATE EXTENSION IF NOT EXISTS hstore"), "hstore")).toBe("error 23505");
    const asQueryable = (c: pg.Client) =>
      ({
        query: async (text: string, params?: unknown[]) => {
          const r = await c.query(text, params);
          return { rows: r.rows, rowCount: r.rowCount ?? 0 };
        },
      }) as unknown as Queryable;
    expect(await race((c) => ensureExtension(asQueryable(c), "pg_trgm"), "pg_trgm")).toBe("ok");
  });
});

describe("engine detection when CREATE EXTENSION timescaledb loses a race", () => {
  /**
   * A connection that answers as a TimescaleDB server whose extension another session created a moment ago (no
   * TimescaleDB server is available to the tests): CREATE EXTENSION fails with 23505, pg_extension then has it.
   */
  const racedServer = (createError: { code?: string; message: string }): Queryable & { statements: string[] } => {
    const statements: string[] = [];
    const result = <R>(rows: unknown[]): QueryResult<R> => ({ rows: rows as R[], rowCount: rows.length });
    return {
      statements,
      async query<R>(text: string): Promise<QueryResult<R>> {
        statements.push(text.replace(/\s+/g, " ").trim());
        if (text.includes("pg_available_extensions")) return result([{ available: true }]);
        if (text.startsWith("CREATE EXTENSION")) throw Object.assign(new Error(createError.message), createError);
        if (text.includes("AS installed")) return result([{ installed: true }]);
        if (text.includes("timescaledb.license")) return result([{ license: "timescale", version: "2.28.0" }]);
        throw new Error(`unexpected statement: ${text}`);
      },
      copyIn: () => Promise.reject(new Error("no COPY")),
      copyOut: () => {
        throw new Error("no COPY");
      },
    };
  };

  it("when the extension was created by the winner (23505), then the engine is timescale, never the portable one", async () => {
    const server = racedServer({
      code: "23505",
      message: 'duplicate key value violates unique constraint "pg_extension_name_index"',
    });
    const choice = await chooseEngine(server);
    expect(choice.engine).toBe("timescale");
    expect(server.statements.some((s) => s.includes("FROM pg_extension WHERE extname = $1"))).toBe(true);
  });

  it("when CREATE EXTENSION fails for another reason, then it still falls back (or refuses when forced)", async () => {
    const denied = () => racedServer({ code: "42501", message: "permission denied to create extension" });
    expect((await chooseEngine(denied())).engine).toBe("postgres");
    await expect(chooseEngine(denied(), "timescale")).rejects.toThrow(/permission denied/);
  });
});
