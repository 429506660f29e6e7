// Migration runner: numbered .sql files under sql/, applied in order, each recorded with its checksum.
// Files named NNNN_name.timescale.sql or NNNN_name.postgres.sql apply to that engine only.
// DDL that both engines share lives once, in sql/include/: a line "-- tally:include name.sql" stands for that
// file's text. The checksum is taken over the expanded text, so moving DDL into an include changes nothing for
// databases that applied the file before.
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Engine } from "./open.js";
import type { Db } from "./types.js";

export interface MigrationFile {
  name: string;
  sql: string;
  checksum: string;
}

export class MigrationError extends Error {
  override name = "MigrationError";
}

const FILE_PATTERN = /^(\d{4})_[a-z0-9_]+(?:\.(timescale|postgres))?\.sql$/;
const INCLUDE = /^-- tally:include ([a-z0-9_]+\.sql)\n/gm;

export function sqlDirectory(): string {
  // src/db/migrate.ts in development, dist/src/db/migrate.js when built: walk up to the package root.
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json"))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error("cannot find the package root (sql/ directory)");
    dir = parent;
  }
  return join(dir, "sql");
}

export async function loadMigrations(engine: Engine, directory = sqlDirectory()): Promise<MigrationFile[]> {
  const names = (await readdir(directory)).filter((n) => n.endsWith(".sql")).sort();
  const files: MigrationFile[] = [];
  for (const name of names) {
    const match = FILE_PATTERN.exec(name);
    if (!match) throw new MigrationError(`migration file ${name} does not match NNNN_name[.timescale|.postgres].sql`);
    if (match[2] && match[2] !== engine) continue;
    const sql = await expandIncludes(await readFile(join(directory, name), "utf8"), join(directory, "include"));
    files.push({ name, sql, checksum: createHash("sha256").update(sql).digest("hex") });
  }
  return files;
}

async function expandIncludes(sql: string, directory: string): Promise<string> {
  const names = [...sql.matchAll(INCLUDE)].map((m) => m[1] as string);
  const texts = new Map(
    await Promise.all(names.map(async (n) => [n, await readFile(join(directory, n), "utf8")] as const)),
  );
  return sql.replace(INCLUDE, (_, n: string) => texts.get(n) as string);
}

const LEDGER = `
  CREATE TABLE IF NOT EXISTS tally_migrations (
    name       text PRIMARY KEY,
    engine     text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
  )`;

interface Applied {
  name: string;
  engine: string;
  checksum: string;
}

async function readLedger(db: Db): Promise<Applied[] | undefined> {
  const { rows } = await db.query<{ exists: boolean }>("SELECT to_regclass('tally_migrations') IS NOT NULL AS exists");
  if (!rows[0]?.exists) return undefined;
  return (await db.query<Applied>("SELECT name, engine, checksum FROM tally_migrations ORDER BY name")).rows;
}

function verify(applied: Applied[], files: MigrationFile[], engine: Engine): void {
  const other = applied.find((a) => a.engine !== engine);
  if (other) {
    throw new MigrationError(
      `this database was set up for the '${other.engine}' engine and cannot be opened with '${engine}' ` +
        `(set TALLY_ENGINE=${other.engine}, or use another database)`,
    );
  }
  const byName = new Map(files.map((f) => [f.name, f]));
  for (const a of applied) {
    const file = byName.get(a.name);
    if (!file) throw new MigrationError(`applied migration ${a.name} is not known to this version of Tally`);
    if (file.checksum !== a.checksum) {
      throw new MigrationError(
        `migration ${a.name} was changed after it was applied (checksum ${a.checksum.slice(0, 12)}… in the ` +
          `database, ${file.checksum.slice(0, 12)}… on disk); add a new migration instead of editing an applied one`,
      );
    }
  }
}

interface MigrateResult {
  applied: string[];
  alreadyApplied: number;
}

/** Applies pending migrations. Safe when several processes start at once: an advisory lock serializes them. */
export async function migrate(db: Db, engine: Engine, files?: MigrationFile[]): Promise<MigrateResult> {
  const migrations = files ?? (await loadMigrations(engine));
  return db.withLock("migrate", async () => {
    await db.query(LEDGER);
    const applied = (await readLedger(db)) ?? [];
    verify(applied, migrations, engine);
    const done = new Set(applied.map((a) => a.name));
    const result: MigrateResult = { applied: [], alreadyApplied: done.size };
    for (const file of migrations) {
      if (done.has(file.name)) continue;
      const record = [
        "INSERT INTO tally_migrations (name, engine, checksum) VALUES ($1, $2, $3)",
        [file.name, engine, file.checksum],
      ] as const;
      try {
        // The ledger row goes first: a concurrent installer that got past the lock anyway fails here.
        await db.transaction(async (tx) => {
          await tx.query(...record);
          await tx.query(file.sql);
        });
      } catch (err) {
        throw new MigrationError(`migration ${file.name} failed: ${(err as Error).message}`, { cause: err });
      }
      result.applied.push(file.name);
    }
    return result;
  });
}

/** Names of migrations not yet applied (for /readyz). */
export async function pendingMigrations(db: Db, files: MigrationFile[]): Promise<string[]> {
  const applied = await readLedger(db);
  const done = new Set((applied ?? []).map((a) => a.name));
  return files.filter((f) => !done.has(f.name)).map((f) => f.name);
}
