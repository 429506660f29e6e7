// Independent reads, sent the fastest way the connection allows: together through the pool (each on a connection
// of its own, answered in parallel), one after the other in a transaction, whose single connection takes one query
// at a time (pg warns about queued queries and pg@9 refuses them).
import type { Db, Queryable } from "./types.js";

/** A Db hands each query to a free connection; a transaction's Queryable is one connection. */
const isPool = (q: Queryable): q is Db => "transaction" in q;

/** Runs `reads` (each sends its queries through `q`) and returns their results in order. */
export async function readAll<const R extends readonly (() => Promise<unknown>)[]>(
  q: Queryable,
  reads: R,
): Promise<{ -readonly [K in keyof R]: Awaited<ReturnType<R[K]>> }> {
  type Out = { -readonly [K in keyof R]: Awaited<ReturnType<R[K]>> };
  if (isPool(q)) return (await Promise.all(reads.map((read) => read()))) as Out;
  const out: unknown[] = [];
  for (const read of reads) out.push(await read());
  return out as Out;
}
