// Stripe sync types: meter events as Tally sends them, what a send can come back with, and the ledger's rows.

/** One Billing Meter event: whole-number `value`, deterministic `identifier`. */
export interface MeterEventSend {
  identifier: string;
  eventName: string;
  stripeCustomerId: string;
  /** A whole number as a decimal string (may be negative: a correction). */
  value: string;
  timestamp: Date;
}

/** What one request to Stripe came to (for a v2 batch: the whole batch). */
export type SendOutcome =
  | { kind: "delivered" }
  /** Stripe already holds an event with this identifier (400, stripe-should-retry: false): delivered earlier. */
  | { kind: "duplicate" }
  | { kind: "rate_limited"; message: string }
  /** 5xx, timeouts, connection errors: not known to have arrived; resend the same event later. */
  | { kind: "retry_later"; message: string }
  /** The key was refused: nothing is wrong with the event, everything waits for a working key. */
  | { kind: "auth_failed"; message: string }
  /** Any other 4xx: Stripe's answer about this event, recorded on the ledger row. */
  | { kind: "rejected"; status: number; code: string; message: string };

/** Sends meter events to Stripe (or to a server that behaves like it): one HTTP request per call. */
export interface MeterEventSender {
  readonly api: "v1" | "v2";
  /** Events per request: 1 on v1, up to 100 on the v2 stream. */
  readonly maxBatch: number;
  /** HTTP requests made so far (sessions included). */
  readonly requests: number;
  send(events: MeterEventSend[]): Promise<SendOutcome>;
}

/** 'hour': per-hour deltas (sum, count meters); 'period': the month's running value (max, last meters). */
export type LedgerKind = "hour" | "period";

export const kindOf = (aggregation: string): LedgerKind =>
  aggregation === "sum" || aggregation === "count" ? "hour" : "period";

/** A ledger row with something to do, joined with its pair's current Stripe mapping. */
export interface WorkRow {
  customer: string;
  meter: string;
  kind: LedgerKind;
  bucket: Date;
  period: Date;
  target: string;
  scale: string;
  covered: string;
  coveredScale: string;
  sentUnits: string;
  seq: number;
  pending: PendingFields | null;
  lastSentTimestamp: Date | null;
  stripeCustomerId: string;
  eventName: string;
}

export interface PendingFields {
  identifier: string;
  units: string;
  target: string;
  scale: string;
  timestamp: Date;
}

/** A send ready to go (written to the ledger before its request). */
export interface PendingSend {
  row: WorkRow;
  pending: PendingFields;
}
