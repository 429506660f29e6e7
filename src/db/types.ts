// The database seam: everything Tally does with a database goes through these few operations.
// Two implementations exist (embedded PGlite, server pg Pool); nothing else knows which one it has.

export type Row = Record<string, unknown>;

export interface QueryResult<R> {
  rows: R[];
  rowCount: number;
}

/** Where COPY FROM writes: a table and its columns, rows in PostgreSQL's text format (or binary). */
export interface CopyTarget {
  table: string;
  columns: readonly string[];
  /** "binary": the source is one binary COPY stream (header, rows, trailer); keep it bounded. */
  format?: "text" | "binary";
}

/** Chunks of COPY data: text of whole lines, or bytes of a binary COPY stream. */
export type CopySource = AsyncIterable<string | Uint8Array> | Iterable<string | Uint8Array>;

export interface Queryable {
  query<R = Row>(text: string, params?: readonly unknown[]): Promise<QueryResult<R>>;
  /**
   * COPY rows into a table. `source` yields chunks of text-format COPY data (whole lines), or of a binary
   * COPY stream. Backpressure is honoured: the source is pulled only as fast as the database takes it.
   * Returns the number of rows written.
   */
  copyIn(target: CopyTarget, source: CopySource): Promise<number>;
  /** COPY (select) TO the caller, as a stream of chunks. `options` is the COPY WITH (...) list. */
  copyOut(select: string, options: string): AsyncIterable<Buffer>;
}

export type LockResult<T> = { acquired: true; value: T } | { acquired: false };

export interface Db extends Queryable {
  readonly backend: "embedded" | "server";
  /** Runs fn in one transaction: committed if fn resolves, rolled back if it throws. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /** Runs fn holding a database-wide exclusive lock on `key`, waiting for it if needed. */
  withLock<T>(key: string, fn: () => Promise<T>): Promise<T>;
  /** Runs fn holding the lock on `key` if nobody else holds it; otherwise does nothing. */
  tryWithLock<T>(key: string, fn: () => Promise<T>): Promise<LockResult<T>>;
  close(): Promise<void>;
}

/** Stable 64-bit advisory-lock key from a name (namespaced so other applications' locks don't collide). */
export function lockId(key: string): string {
  // FNV-1a 64-bit, returned as a signed decimal string for pg_advisory_lock(bigint).
  let h = 0xcbf29ce484222325n;
  for (const byte of Buffer.from(`tally:${key}`, "utf8")) {
    h ^= BigInt(byte);
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return BigInt.asIntN(64, h).toString();
}
