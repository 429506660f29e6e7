// Server backend: a pg Pool, COPY through pg-copy-streams, advisory locks held on a dedicated connection.
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import pg from "pg";
import { from as copyFrom, to as copyTo } from "pg-copy-streams";
import type { CopySource, CopyTarget, Db, LockResult, Queryable, QueryResult, Row } from "./types.js";
import { lockId } from "./types.js";

interface ServerDbOptions {
  connectionString: string;
  max: number;
  /** Extra session settings applied on every new connection (e.g. search_path for test isolation). */
  options?: string;
  /** application_name of the sessions (pg_stat_activity). */
  applicationName?: string;
  onError?: (err: Error) => void;
}

export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

export function copyInStatement(target: CopyTarget, source: "STDIN" | "'/dev/blob'"): string {
  const columns = target.columns.map(quoteIdent).join(", ");
  return `COPY ${target.table} (${columns}) FROM ${source}${target.format === "binary" ? " (FORMAT binary)" : ""}`;
}

/** Several statements without parameters (migrations) come back as an array of results: keep the last. */
function lastResult<R>(result: pg.QueryResult | pg.QueryResult[]): QueryResult<R> {
  const last = Array.isArray(result) ? result.at(-1) : result;
  return { rows: (last?.rows ?? []) as R[], rowCount: last?.rowCount ?? 0 };
}

function clientQueryable(client: pg.PoolClient | pg.Pool): Queryable {
  return {
    async query<R = Row>(text: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
      return lastResult<R>(await client.query(text, params as unknown[] | undefined));
    },
    async copyIn(target, source) {
      if (!("release" in client)) throw new Error("copyIn needs a transaction");
      const stream = client.query(copyFrom(copyInStatement(target, "STDIN")));
      await pipeline(Readable.from(source, { objectMode: false }), stream);
      return stream.rowCount;
    },
    copyOut(select, options) {
      if (!("release" in client)) throw new Error("copyOut needs a transaction");
      return client.query(copyTo(`COPY (${select}) TO STDOUT WITH (${options})`)) as AsyncIterable<Buffer>;
    },
  };
}

export class ServerDb implements Db {
  readonly backend = "server" as const;
  readonly pool: pg.Pool;
  private readonly onError: ((err: Error) => void) | undefined;

  constructor(opts: ServerDbOptions) {
    this.onError = opts.onError;
    this.pool = new pg.Pool({
      connectionString: opts.connectionString,
      max: opts.max,
      options: opts.options,
      application_name: opts.applicationName,
      connectionTimeoutMillis: 5_000,
      idleTimeoutMillis: 30_000,
    });
    // An idle client losing its connection (database restart) must not crash the process.
    this.pool.on("error", (err) => opts.onError?.(err));
  }

  async query<R = Row>(text: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    return lastResult<R>(await this.pool.query(text, params as unknown[] | undefined));
  }

  /**
   * A client checked out of the pool. pg only listens for errors on idle clients: a checked-out one whose
   * connection the server terminates (restart, failover, a dropped database) would emit 'error' with no listener
   * and crash the process. The query in progress fails on its own; this listener only keeps the process alive.
   */
  async #connect(): Promise<pg.PoolClient> {
    const client = await this.pool.connect();
    if (client.listenerCount("error") === 0) client.on("error", (err) => this.onError?.(err));
    return client;
  }

  copyIn(target: CopyTarget, source: CopySource): Promise<number> {
    return this.transaction((tx) => tx.copyIn(target, source));
  }

  async *copyOut(select: string, options: string): AsyncIterable<Buffer> {
    const client = await this.#connect();
    let broken: Error | undefined;
    try {
      yield* clientQueryable(client).copyOut(select, options);
    } catch (err) {
      broken = err as Error;
      throw err;
    } finally {
      // A COPY abandoned half-way leaves the connection mid-protocol: destroy it rather than reuse it.
      client.release(broken ?? false);
    }
  }

  async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    const client = await this.#connect();
    let destroy = false;
    try {
      await client.query("BEGIN");
      const value = await fn(clientQueryable(client));
      await client.query("COMMIT");
      return value;
    } catch (err) {
      try {
        await client.query("ROLLBACK");
      } catch {
        destroy = true;
      }
      throw err;
    } finally {
      client.release(destroy);
    }
  }

  async withLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const client = await this.#connect();
    let destroy = false;
    try {
      await client.query("SELECT pg_advisory_lock($1::bigint)", [lockId(key)]);
      try {
        return await fn();
      } finally {
        await client.query("SELECT pg_advisory_unlock($1::bigint)", [lockId(key)]).catch(() => {
          destroy = true;
        });
      }
    } finally {
      client.release(destroy);
    }
  }

  async tryWithLock<T>(key: string, fn: () => Promise<T>): Promise<LockResult<T>> {
    const client = await this.#connect();
    let destroy = false;
    try {
      const { rows } = await client.query<{ ok: boolean }>("SELECT pg_try_advisory_lock($1::bigint) AS ok", [
        lockId(key),
      ]);
      if (!rows[0]?.ok) return { acquired: false };
      try {
        return { acquired: true, value: await fn() };
      } finally {
        await client.query("SELECT pg_advisory_unlock($1::bigint)", [lockId(key)]).catch(() => {
          destroy = true;
        });
      }
    } finally {
      client.release(destroy);
    }
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
