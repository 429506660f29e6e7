// Test databases: every test file gets its own, on each engine — a fresh database on the real PostgreSQL
// (portable engine), or an in-memory embedded PGlite with TimescaleDB.
import { randomBytes } from "node:crypto";
import pg from "pg";
import { type Engine, type OpenedDb, openDatabase } from "../../src/db/open.js";

export const ADMIN_URL = process.env.TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
export const TEST_DB_PREFIX = "tally_test_";

/** "embedded": PGlite + TimescaleDB (timescale engine). "postgres": PostgreSQL 15 server (portable engine). */
export type TestBackend = "embedded" | "postgres";
export const BACKENDS: TestBackend[] = ["embedded", "postgres"];

export const engineOf = (b: TestBackend): Engine => (b === "embedded" ? "timescale" : "postgres");

export interface TestDatabase {
  backend: TestBackend;
  /** Server URL of this database (postgres backend only): other processes can connect to it. */
  url?: string;
  open(): Promise<OpenedDb>;
  drop(): Promise<void>;
}

export function serverUrl(database: string): string {
  const u = new URL(ADMIN_URL);
  u.pathname = `/${database}`;
  return u.toString();
}

export async function createServerDatabase(): Promise<{ name: string; url: string; drop(): Promise<void> }> {
  // The creation time is in the name, so the cleanup of interrupted runs (globalSetup) can tell a leftover from
  // a database that another run on the same server is using right now.
  const name = `${TEST_DB_PREFIX}${Math.floor(Date.now() / 1000).toString(36)}_${randomBytes(4).toString("hex")}`;
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE "${name}"`);
  await admin.end();
  return {
    name,
    url: serverUrl(name),
    async drop() {
      const c = new pg.Client({ connectionString: ADMIN_URL });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      await c.end();
    },
  };
}

export async function createTestDatabase(backend: TestBackend): Promise<TestDatabase> {
  if (backend === "embedded") {
    return {
      backend,
      open: () => openDatabase({ dataDir: "memory://" }),
      drop: async () => {},
    };
  }
  const server = await createServerDatabase();
  return {
    backend,
    url: server.url,
    open: () => openDatabase({ databaseUrl: server.url, dataDir: "unused", poolSize: 10 }),
    drop: server.drop,
  };
}
