// Stripe sync types: meter events as Tally sends them, what a send can come back with, and the ledger's rows and
// kinds.
import { type Aggregation, aggregation, type StripeValue, stripeValue } from "../catalog/schemas.js";
import type { StripeFailure } from "./client.js";

/** One Billing Meter event: whole-number `value`, deterministic `identifier`. */
export interface MeterEventSend {
  identifier: string;
  eventName: string;
  stripeCustomerId: string;
  /** A whole number as a decimal string (may be negative: a correction). */
  value: string;
  timestamp: Date;
}

/** What one meter-event request came to (for a v2 batch: the whole batch). */
export type MeterSendOutcome =
  | { kind: "delivered" }
  /** Stripe already holds an event with this identifier (400, stripe-should-retry: false): delivered earlier. */
  | { kind: "duplicate" }
  | StripeFailure;

/** Sends meter events to Stripe (or to a server that behaves like it): one HTTP request per call. */
export interface MeterEventSender {
  readonly api: "v1" | "v2";
  /** Events per request: 1 on v1, up to 100 on the v2 stream. */
  readonly maxBatch: number;
  /** HTTP requests made so far (sessions included). */
  readonly requests: number;
  send(events: MeterEventSend[]): Promise<MeterSendOutcome>;
}

/** 'hour': per-hour deltas; 'period': the running value of the customer's billing period. */
export type LedgerKind = "hour" | "period";

/**
 * The ledger-kind rule, its one definition: sum and count meters, and every meter sent as amounts (priced changes
 * per hour), keep hourly deltas; max, last, min, avg and unique_count meters send the running value of the
 * customer's billing period (their figures do not add up over hours).
 */
export const ledgerKind = (of: Aggregation, value: StripeValue): LedgerKind =>
  value === "amount" || of === "sum" || of === "count" ? "hour" : "period";

/**
 * The same rule as a table for SQL to join, unnest($n::text[], $n+1::text[], $n+2::text[]) AS (value, aggregation,
 * kind): queries that need a meter's kind take it from here rather than restate it.
 */
export const LEDGER_KIND_TABLE: [string[], string[], LedgerKind[]] = (() => {
  const rows = stripeValue.options.flatMap((v) => aggregation.options.map((a) => [v, a, ledgerKind(a, v)] as const));
  return [rows.map((r) => r[0]), rows.map((r) => r[1]), rows.map((r) => r[2])];
})();

/** A ledger row with something to do, joined with its pair's current Stripe mapping. */
export interface WorkRow {
  customer: string;
  meter: string;
  kind: LedgerKind;
  bucket: Date;
  /** Start and end of the customer's billing period the bucket belongs to (end: a UTC month's when absent). */
  period: Date;
  periodEnd?: Date;
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
