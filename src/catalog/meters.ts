// Meters: what is measured and how a period's usage is aggregated (sum, count, max, last).
import type { Queryable } from "../db/types.js";
import type { Aggregation } from "./schemas.js";

export interface Meter {
  key: string;
  name: string;
  unit: string;
  aggregation: Aggregation;
  stripeEventName: string | null;
  stripeScale: string;
  createdAt: Date;
  updatedAt: Date;
}

export interface MeterInput {
  name: string;
  unit: string;
  aggregation: Aggregation;
  stripe_event_name?: string | null | undefined;
  stripe_scale?: string | undefined;
}

interface MeterRow {
  key: string;
  name: string;
  unit: string;
  aggregation: Aggregation;
  stripe_event_name: string | null;
  stripe_scale: string;
  created_at: Date;
  updated_at: Date;
  created?: boolean;
}

const COLUMNS =
  "key, name, unit, aggregation, stripe_event_name, stripe_scale::text AS stripe_scale, created_at, updated_at";

const fromRow = (r: MeterRow): Meter => ({
  key: r.key,
  name: r.name,
  unit: r.unit,
  aggregation: r.aggregation,
  stripeEventName: r.stripe_event_name,
  stripeScale: r.stripe_scale,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

export async function upsertMeter(
  db: Queryable,
  key: string,
  input: MeterInput,
): Promise<{ meter: Meter; created: boolean }> {
  const { rows } = await db.query<MeterRow>(
    `INSERT INTO meters (key, name, unit, aggregation, stripe_event_name, stripe_scale)
     VALUES ($1, $2, $3, $4, $5, COALESCE($6::numeric, 1))
     ON CONFLICT (key) DO UPDATE SET
       name = EXCLUDED.name, unit = EXCLUDED.unit, aggregation = EXCLUDED.aggregation,
       stripe_event_name = EXCLUDED.stripe_event_name,
       stripe_scale = COALESCE($6::numeric, meters.stripe_scale),
       updated_at = now()
     RETURNING ${COLUMNS}, (xmax = 0) AS created`,
    [key, input.name, input.unit, input.aggregation, input.stripe_event_name ?? null, input.stripe_scale ?? null],
  );
  const row = rows[0] as MeterRow;
  return { meter: fromRow(row), created: Boolean(row.created) };
}

export async function listMeters(db: Queryable): Promise<Meter[]> {
  const { rows } = await db.query<MeterRow>(`SELECT ${COLUMNS} FROM meters ORDER BY key`);
  return rows.map(fromRow);
}

export async function getMeter(db: Queryable, key: string): Promise<Meter | undefined> {
  const { rows } = await db.query<MeterRow>(`SELECT ${COLUMNS} FROM meters WHERE key = $1`, [key]);
  return rows[0] ? fromRow(rows[0]) : undefined;
}
