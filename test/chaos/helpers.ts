// Shared by the chaos tests: a free port, a client that retries a batch with the same ids (as real clients do)
// until Tally acknowledges it, and a tally of what happened.
export { freePort } from "../helpers/postgresServer.js";

import { pace } from "../helpers/eventually.js";

export { pace };

interface ClientStats {
  batches: number;
  events: number;
  /** Sum of `accepted` over every 202: must equal the events stored. */
  accepted: number;
  /** Sum of `duplicates` over every 202: retries of batches that had committed before their answer was lost. */
  duplicates: number;
  attempts: number;
  /** Status codes (or error codes) of the attempts that failed and were retried. */
  failures: Map<string, number>;
}

export function newStats(): ClientStats {
  return { batches: 0, events: 0, accepted: 0, duplicates: 0, attempts: 0, failures: new Map() };
}

/** Posts one batch until it gets a 202; a 4xx other than 429 is a bug and fails the test. */
export async function postUntilAccepted(
  url: () => string,
  key: string,
  events: object[],
  stats: ClientStats,
  give_up_after_ms = 120_000,
): Promise<void> {
  const started = Date.now();
  const body = JSON.stringify({ events });
  for (;;) {
    stats.attempts += 1;
    let outcome: string;
    try {
      const res = await fetch(`${url()}/v1/events`, {
        method: "POST",
        headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json", Connection: "close" },
        body,
        signal: AbortSignal.timeout(30_000),
      });
      const text = await res.text();
      if (res.status === 202) {
        const r = JSON.parse(text) as { accepted: number; duplicates: number };
        stats.batches += 1;
        stats.events += events.length;
        stats.accepted += r.accepted;
        stats.duplicates += r.duplicates;
        return;
      }
      if (res.status < 500 && res.status !== 429) throw new Error(`refused: ${res.status} ${text.slice(0, 300)}`);
      outcome = String(res.status);
    } catch (err) {
      if ((err as Error).message.startsWith("refused:")) throw err;
      const cause = (err as { cause?: { code?: string } }).cause;
      outcome = cause?.code ?? (err as Error).name;
    }
    stats.failures.set(outcome, (stats.failures.get(outcome) ?? 0) + 1);
    if (Date.now() - started > give_up_after_ms) throw new Error(`batch not accepted within ${give_up_after_ms} ms`);
    await pace(100);
  }
}
