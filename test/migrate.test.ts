// Migrations: applied once, idempotent, safe under concurrent starts, refusing edited files or a changed engine.
import { cp, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { loadMigrations, MigrationError, migrate, pendingMigrations, sqlDirectory } from "../src/db/migrate.js";
import { openDatabase } from "../src/db/open.js";
import type { Db } from "../src/db/types.js";
import { BACKENDS, createTestDatabase, engineOf, type TestDatabase } from "./helpers/databases.js";

describe.each(BACKENDS)("migrations on %s", (backend) => {
  const engine = engineOf(backend);
  let database: TestDatabase;
  let db: Db;

  // The tests below the first share one database, migrated before them; each leaves it as it found it.
  beforeAll(async () => {
    database = await createTestDatabase(backend, { empty: true });
    db = (await database.open()).db;
    await migrate(db, engine);
  });
  afterAll(async () => {
    await db.close();
    await database.drop();
  });

  it("when applied to an empty database, then every file runs once and is recorded with its checksum", async () => {
    const empty = await createTestDatabase(backend, { empty: true });
    const { db } = await empty.open();
    onTestFinished(async () => {
      await db.close();
      await empty.drop();
    });
    const files = await loadMigrations(engine);
    const result = await migrate(db, engine, files);
    expect(result.applied).toEqual(files.map((f) => f.name));
    const { rows } = await db.query<{ name: string; checksum: string; engine: string }>(
      "SELECT name, checksum, engine FROM tally_migrations ORDER BY name",
    );
    expect(rows).toEqual(files.map((f) => ({ name: f.name, checksum: f.checksum, engine })));
    expect(files.some((f) => f.name.endsWith(`.${engine}.sql`))).toBe(true);
    expect(files.some((f) => f.name.endsWith(`.${engine === "timescale" ? "postgres" : "timescale"}.sql`))).toBe(false);
    expect(await pendingMigrations(db, files)).toEqual([]);
  });

  it("when applied a second time, then nothing runs and nothing changes", async () => {
    const before = await db.query("SELECT name, applied_at FROM tally_migrations ORDER BY name");
    const result = await migrate(db, engine);
    expect(result.applied).toEqual([]);
    const after = await db.query("SELECT name, applied_at FROM tally_migrations ORDER BY name");
    expect(after.rows).toEqual(before.rows);
  });

  it("when an applied file was edited, then start-up is refused with a clear message", async () => {
    const files = await loadMigrations(engine);
    const edited = files.map((f, i) => (i === 0 ? { ...f, checksum: "0".repeat(64), sql: `${f.sql}\n-- edit` } : f));
    await expect(migrate(db, engine, edited)).rejects.toThrow(/0001_core\.sql was changed after it was applied/);
  });

  it("when the database was set up for the other engine, then start-up is refused", async () => {
    const other = engine === "timescale" ? "postgres" : "timescale";
    await expect(migrate(db, other, [])).rejects.toThrow(MigrationError);
    await expect(migrate(db, other, [])).rejects.toThrow(new RegExp(`set up for the '${engine}' engine`));
  });

  it("when a file is added later, then only that file runs", async () => {
    const dir = await mkdtemp(join(tmpdir(), "tally-sql-"));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    await cp(sqlDirectory(), dir, { recursive: true });
    await writeFile(join(dir, "9999_extra.sql"), "CREATE TABLE extra_probe (id int);");
    const files = await loadMigrations(engine, dir);
    expect(await pendingMigrations(db, files)).toEqual(["9999_extra.sql"]);
    const result = await migrate(db, engine, files);
    expect(result.applied).toEqual(["9999_extra.sql"]);
    await db.query("DROP TABLE extra_probe");
    await db.query("DELETE FROM tally_migrations WHERE name = '9999_extra.sql'");
  });

  it("when a file fails, then its ledger row is not kept and the error names the file", async () => {
    const dir = await mkdtemp(join(tmpdir(), "tally-sql-"));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    await cp(sqlDirectory(), dir, { recursive: true });
    await writeFile(join(dir, "9998_broken.sql"), "CREATE TABLE broken_probe (id int); SELECT * FROM no_such_table;");
    const files = await loadMigrations(engine, dir);
    await expect(migrate(db, engine, files)).rejects.toThrow(/9998_broken\.sql failed/);
    expect(await pendingMigrations(db, files)).toEqual(["9998_broken.sql"]);
    const { rows } = await db.query<{ t: string | null }>("SELECT to_regclass('broken_probe')::text AS t");
    expect(rows[0]?.t).toBeNull();
  });
});

describe("concurrent starts on the real PostgreSQL", () => {
  it("when five processes migrate one empty database at once, then each file is applied exactly once", async () => {
    const database = await createTestDatabase("postgres", { empty: true });
    try {
      const dbs = await Promise.all(
        Array.from({ length: 5 }, () => openDatabase({ databaseUrl: database.url, dataDir: "unused", poolSize: 3 })),
      );
      const results = await Promise.all(dbs.map(({ db, engine }) => migrate(db, engine)));
      const files = await loadMigrations("postgres");
      expect(results.flatMap((r) => r.applied).sort()).toEqual(files.map((f) => f.name).sort());
      const { rows } = await dbs[0]!.db.query<{ n: string }>("SELECT count(*) AS n FROM tally_migrations");
      expect(Number(rows[0]?.n)).toBe(files.length);
      await Promise.all(dbs.map(({ db }) => db.close()));
    } finally {
      await database.drop();
    }
  });
});

describe("concurrent starts on the embedded engine", () => {
  it("when several starters migrate one embedded database at once, then each file is applied exactly once", async () => {
    const database = await createTestDatabase("embedded", { empty: true });
    const { db, engine } = await database.open();
    const results = await Promise.all([migrate(db, engine), migrate(db, engine), migrate(db, engine)]);
    const files = await loadMigrations(engine);
    expect(results.flatMap((r) => r.applied).sort()).toEqual(files.map((f) => f.name).sort());
    await db.close();
  });
});
