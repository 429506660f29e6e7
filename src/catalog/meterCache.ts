// Meter lookups for the ingest hot path: an in-memory copy refreshed every second, and at once (rate-limited)
// when an unknown key shows up, so a meter created a moment ago — in any process — is accepted.
import type { Queryable } from "../db/types.js";
import type { Aggregation } from "./schemas.js";

const MAX_AGE_MS = 1_000;
const MIN_RELOAD_GAP_MS = 100;

export class MeterCache {
  #byKey = new Map<string, Aggregation>();
  #dimensions = new Map<string, string[]>();
  #unique = new Map<string, string>();
  #loadedAt = 0;
  #loading: Promise<void> | undefined;

  constructor(private readonly db: Queryable) {}

  async #read(q: Queryable): Promise<void> {
    const { rows } = await q.query<{
      key: string;
      aggregation: Aggregation;
      dimensions: string[];
      unique_property: string | null;
    }>("SELECT key, aggregation, dimensions, unique_property FROM meters", []);
    this.#byKey = new Map(rows.map((r) => [r.key, r.aggregation]));
    this.#dimensions = new Map(rows.map((r) => [r.key, r.dimensions]));
    this.#unique = new Map(rows.flatMap((r) => (r.unique_property ? [[r.key, r.unique_property] as const] : [])));
    this.#loadedAt = Date.now();
  }

  /**
   * Reloads the meters. Inside a transaction pass it as `via`: on the embedded engine (one connection) a
   * query outside the open transaction would wait for it to end, and the transaction waits for us.
   */
  async #load(via?: Queryable): Promise<void> {
    if (via) return this.#read(via);
    this.#loading ??= this.#read(this.db).finally(() => {
      this.#loading = undefined;
    });
    return this.#loading;
  }

  /** A lookup function valid for one batch: fresh within a second, reloaded once if a key is unknown. */
  async snapshot(keys: Iterable<string> = []): Promise<(key: string) => Aggregation | undefined> {
    if (Date.now() - this.#loadedAt > MAX_AGE_MS) await this.#load();
    for (const key of keys) {
      if (!this.#byKey.has(key) && Date.now() - this.#loadedAt > MIN_RELOAD_GAP_MS) {
        await this.#load();
        break;
      }
    }
    const map = this.#byKey;
    return (key) => map.get(key);
  }

  /** For streams: checks one key, reloading at most every MIN_RELOAD_GAP_MS on a miss. */
  async lookup(key: string, via?: Queryable): Promise<Aggregation | undefined> {
    if (Date.now() - this.#loadedAt > MAX_AGE_MS) await this.#load(via);
    let found = this.#byKey.get(key);
    if (!found && Date.now() - this.#loadedAt > MIN_RELOAD_GAP_MS) {
      await this.#load(via);
      found = this.#byKey.get(key);
    }
    return found;
  }

  /** Whether a meter is known, from memory only (a stale copy is refreshed in the background). */
  knownNow(key: string): boolean {
    if (Date.now() - this.#loadedAt > MAX_AGE_MS) void this.#load().catch(() => undefined);
    return this.#byKey.has(key);
  }

  /** The meter's dimensions as of the last load (call lookup first); every meter's for `undefined`. */
  dimensionsOf(key?: string): readonly string[] {
    if (key !== undefined) return this.#dimensions.get(key) ?? [];
    return [...new Set([...this.#dimensions.values()].flat())].sort();
  }

  /** A unique_count meter's unique property as of the last load (call lookup or snapshot first). */
  uniquePropertyOf(key: string): string | undefined {
    return this.#unique.get(key);
  }

  invalidate(): void {
    this.#loadedAt = 0;
  }
}
