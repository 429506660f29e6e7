// Lag-tolerant reads from a streaming replica (DATABASE_READ_URL). Once a second a check asks how far the replica has
// replayed; each read is handed the replica while it is within the allowed lag, else the primary. Nothing but reads
// that tolerate lag ever gets the replica: decisions, credits, invoices and writes use the primary Db directly.
import type { Db } from "./types.js";

/** Why a read went to the primary although a replica is configured. */
type FallbackReason = "lag" | "down" | "not_standby" | "error" | "missing";

interface ReadTarget {
  db: Db;
  source: "replica" | "primary";
  /**
   * The answer's as_of for a read that started at `now`: `now` on the primary; on the replica, no later than what it
   * is known to have replayed (every transaction acknowledged before it is in the answer).
   */
  asOf(now: Date): Date;
}

interface ReadRouterOptions {
  /** A replica further behind than this serves no reads. */
  maxLagMs: number;
  checkEveryMs?: number;
  /** A check that takes longer counts as the replica being down. */
  checkTimeoutMs?: number;
  /** Each read sent to the primary instead of the replica (a metric counts them). */
  onFallback?(reason: FallbackReason): void;
  /** After each check: the lag (null: unknown), and when usability changes, why (for a log line). */
  onCheck?(state: { usable: boolean; lagMs: number | null; reason?: FallbackReason; change: boolean }): void;
  /** Errors that may come from the replica being behind (a row not replayed yet): retried on the primary. */
  retryOnPrimary?(err: unknown): boolean;
  now?(): number;
}

interface ReplicaState {
  /** undefined: usable as far as the last check knows (subject to lag). */
  down?: "down" | "not_standby" | "error";
  /** What the replica had replayed at the last check: an acknowledged-before time, or null if unknown. */
  replayedTo: number | null;
}

/** A WAL position "16/B374D848" as a number that orders like the position. */
export function lsnValue(lsn: string): bigint {
  const [hi, lo] = lsn.split("/");
  return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`);
}

/**
 * Errors that say the replica (not the read) failed: a lost or refused connection (no answer from the server, or
 * SQLSTATE classes 08, 53, 57, 58), a query cancelled by a recovery conflict (40001), or a write refused as read-only
 * (25006). An error the server answered (pg's DatabaseError carries its severity) with another SQLSTATE is the read's.
 */
export function isReplicaFailure(err: unknown): boolean {
  const { code, severity } = (err ?? {}) as { code?: unknown; severity?: unknown };
  if (severity === undefined || typeof code !== "string") return true;
  return /^(08|53|57|58)/.test(code) || code === "40001" || code === "25006";
}

export class ReadRouter {
  readonly #primary: ReadTarget;
  #state: ReplicaState = { down: "down", replayedTo: null };
  #caughtUpAt: number | null = null;
  #timer: NodeJS.Timeout | undefined;
  #checking: Promise<void> | undefined;
  #usable = false;
  readonly #now: () => number;

  constructor(
    private readonly primary: Db,
    private readonly replica: Db | undefined,
    private readonly opts: ReadRouterOptions,
  ) {
    this.#primary = { db: primary, source: "primary", asOf: (now) => now };
    this.#now = opts.now ?? Date.now;
  }

  get enabled(): boolean {
    return this.replica !== undefined;
  }

  /** Checks the replica once (bounded), then every second. */
  async start(): Promise<void> {
    if (!this.replica) return;
    await this.check();
    this.#timer = setInterval(() => void this.check(), this.opts.checkEveryMs ?? 1_000);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#checking;
  }

  /** Where a lag-tolerant read goes now. */
  pick(): ReadTarget {
    const replica = this.replica;
    if (!replica) return this.#primary;
    const { down, replayedTo } = this.#state;
    if (down) return this.#fallback(down);
    if (replayedTo === null || this.#now() - replayedTo > this.opts.maxLagMs) return this.#fallback("lag");
    return { db: replica, source: "replica", asOf: (now) => new Date(Math.min(now.getTime(), replayedTo)) };
  }

  /**
   * Runs a read on pick()'s target. A replica that fails under it (connection lost, recovery conflict) is not used
   * until the next check, and the read runs again on the primary; so does a read whose error `retryOnPrimary` names
   * (a customer created a moment ago, not replayed yet).
   */
  async run<T>(read: (target: ReadTarget) => Promise<T>): Promise<T> {
    const target = this.pick();
    if (target.source === "primary") return read(target);
    try {
      return await read(target);
    } catch (err) {
      const failed = isReplicaFailure(err);
      if (!failed && !this.opts.retryOnPrimary?.(err)) throw err;
      if (failed) this.#state = { ...this.#state, down: "error" };
      return read(this.#fallback(failed ? "error" : "missing"));
    }
  }

  #fallback(reason: FallbackReason): ReadTarget {
    this.opts.onFallback?.(reason);
    return this.#primary;
  }

  /** One check now (at most one at a time; one that hangs past the timeout counts as the replica being down). */
  check(): Promise<void> {
    if (!this.#checking) {
      const checking = this.#check().finally(() => {
        if (this.#checking === checking) this.#checking = undefined;
      });
      this.#checking = checking;
    }
    const timeout = this.opts.checkTimeoutMs ?? 2_000;
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([
      this.#checking,
      new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          this.#settle({ down: "down", replayedTo: this.#state.replayedTo });
          resolve();
        }, timeout);
      }),
    ]).finally(() => clearTimeout(timer));
  }

  async #check(): Promise<void> {
    const replica = this.replica as Db;
    const startedAt = this.#now();
    // The primary's WAL position first: every transaction acknowledged before startedAt lies before it.
    const wal = await this.primary
      .query<{ lsn: string }>("SELECT pg_current_wal_insert_lsn()::text AS lsn")
      .then((r) => r.rows[0]?.lsn ?? null)
      .catch(() => null);
    let row: { standby: boolean; replayed: string | null; replayed_at: Date | null } | undefined;
    try {
      ({
        rows: [row],
      } = await replica.query<{ standby: boolean; replayed: string | null; replayed_at: Date | null }>(
        `SELECT pg_is_in_recovery() AS standby, pg_last_wal_replay_lsn()::text AS replayed,
                pg_last_xact_replay_timestamp() AS replayed_at`,
      ));
    } catch {
      this.#settle({ down: "down", replayedTo: this.#state.replayedTo });
      return;
    }
    // A server out of recovery is no replica of this primary any more (promoted, or the wrong URL): never read there.
    if (!row?.standby) return this.#settle({ down: "not_standby", replayedTo: null });
    if (wal !== null && row.replayed !== null && lsnValue(row.replayed) >= lsnValue(wal)) this.#caughtUpAt = startedAt;
    // Replayed up to the last replayed commit's time, and up to the last time it had everything the primary had
    // (an idle primary commits nothing: its replica is current, although its last commit is old).
    const replayedAt = row.replayed_at ? new Date(row.replayed_at).getTime() : null;
    const replayedTo = Math.max(replayedAt ?? Number.NEGATIVE_INFINITY, this.#caughtUpAt ?? Number.NEGATIVE_INFINITY);
    this.#settle({ replayedTo: Number.isFinite(replayedTo) ? replayedTo : null });
  }

  #settle(state: ReplicaState): void {
    this.#state = state;
    const lagMs = state.down || state.replayedTo === null ? null : Math.max(0, this.#now() - state.replayedTo);
    const usable = lagMs !== null && lagMs <= this.opts.maxLagMs;
    const reason = usable ? undefined : (state.down ?? "lag");
    this.opts.onCheck?.({ usable, lagMs, reason, change: usable !== this.#usable });
    this.#usable = usable;
  }
}
