// Meters: what is measured, how a period's usage is aggregated (sum, count, max, last), and the event properties
// (dimensions) usage is kept by.
import type { Db, Queryable } from "../db/types.js";
import { conflict } from "../errors.js";
import type { Aggregation, StripeValue } from "./schemas.js";

export interface Meter {
  key: string;
  name: string;
  unit: string;
  aggregation: Aggregation;
  stripeEventName: string | null;
  stripeScale: string;
  /** Event property keys usage is kept by, in order; fixed once the meter has events. */
  dimensions: string[];
  stripeValue: StripeValue;
  createdAt: Date;
  updatedAt: Date;
}

interface MeterInput {
  name: string;
  unit: string;
  aggregation: Aggregation;
  stripe_event_name?: string | null | undefined;
  stripe_scale?: string | undefined;
  dimensions?: string[] | undefined;
  stripe_value?: StripeValue | undefined;
}

interface MeterRow {
  key: string;
  name: string;
  unit: string;
  aggregation: Aggregation;
  stripe_event_name: string | null;
  stripe_scale: string;
  dimensions: string[];
  stripe_value: StripeValue;
  created_at: Date;
  updated_at: Date;
}

const COLUMNS =
  "key, name, unit, aggregation, stripe_event_name, stripe_scale::text AS stripe_scale, dimensions, stripe_value, created_at, updated_at";

const fromRow = (r: MeterRow): Meter => ({
  key: r.key,
  name: r.name,
  unit: r.unit,
  aggregation: r.aggregation,
  stripeEventName: r.stripe_event_name,
  stripeScale: r.stripe_scale,
  dimensions: r.dimensions,
  stripeValue: r.stripe_value,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

const sameList = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((x, i) => x === b[i]);

/**
 * Creates or updates a meter. Dimensions (and stripe_value) left out keep their value. Changing the dimensions of a
 * meter that has events is refused (409 meter_in_use): its rollups are keyed by them. The meter row is locked while
 * checking; ingest marks a meter's first events under the same row lock (see dimensions/meters.ts).
 */
export async function upsertMeter(db: Db, key: string, input: MeterInput): Promise<{ meter: Meter; created: boolean }> {
  return db.transaction(async (tx) => {
    const current = await tx.query<{ dimensions: string[]; has_events: boolean }>(
      "SELECT dimensions, has_events FROM meters WHERE key = $1 FOR UPDATE",
      [key],
    );
    const was = current.rows[0];
    if (was?.has_events && input.dimensions && !sameList(was.dimensions, input.dimensions)) {
      throw conflict(
        "meter_in_use",
        `meter ${key} has events; its dimensions (${was.dimensions.join(", ") || "none"}) cannot change — define a new meter instead`,
      );
    }
    const { rows } = await tx.query<MeterRow>(
      `INSERT INTO meters (key, name, unit, aggregation, stripe_event_name, stripe_scale, dimensions, stripe_value)
       VALUES ($1, $2, $3, $4, $5, COALESCE($6::numeric, 1), COALESCE($7::text[], '{}'), COALESCE($8, 'quantity'))
       ON CONFLICT (key) DO UPDATE SET
         name = EXCLUDED.name, unit = EXCLUDED.unit, aggregation = EXCLUDED.aggregation,
         stripe_event_name = EXCLUDED.stripe_event_name,
         stripe_scale = COALESCE($6::numeric, meters.stripe_scale),
         dimensions = COALESCE($7::text[], meters.dimensions),
         stripe_value = COALESCE($8, meters.stripe_value),
         updated_at = now()
       RETURNING ${COLUMNS}`,
      [
        key,
        input.name,
        input.unit,
        input.aggregation,
        input.stripe_event_name ?? null,
        input.stripe_scale ?? null,
        input.dimensions ?? null,
        input.stripe_value ?? null,
      ],
    );
    const row = rows[0] as MeterRow;
    return { meter: fromRow(row), created: was === undefined };
  });
}

export async function listMeters(db: Queryable): Promise<Meter[]> {
  const { rows } = await db.query<MeterRow>(`SELECT ${COLUMNS} FROM meters ORDER BY key`);
  return rows.map(fromRow);
}

export async function getMeter(db: Queryable, key: string): Promise<Meter | undefined> {
  const { rows } = await db.query<MeterRow>(`SELECT ${COLUMNS} FROM meters WHERE key = $1`, [key]);
  return rows[0] ? fromRow(rows[0]) : undefined;
}
