// Meters: what is measured, how a range's usage is aggregated (sum, count, max, last, min, avg, unique_count), and
// the event properties (dimensions) usage is kept by.
import type { Db, Queryable } from "../db/types.js";
import { conflict, unprocessable } from "../errors.js";
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
  /** unique_count: the event property whose distinct values are counted; null for other aggregations. */
  uniqueProperty: string | null;
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
  unique_property?: string | null | undefined;
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
  unique_property: string | null;
  created_at: Date;
  updated_at: Date;
}

const COLUMNS =
  "key, name, unit, aggregation, stripe_event_name, stripe_scale::text AS stripe_scale, dimensions, stripe_value, unique_property, created_at, updated_at";

const fromRow = (r: MeterRow): Meter => ({
  key: r.key,
  name: r.name,
  unit: r.unit,
  aggregation: r.aggregation,
  stripeEventName: r.stripe_event_name,
  stripeScale: r.stripe_scale,
  dimensions: r.dimensions,
  stripeValue: r.stripe_value,
  uniqueProperty: r.unique_property,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

const sameList = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((x, i) => x === b[i]);

/** unique_property belongs to unique_count, which requires it: 422 naming the field otherwise. */
function checkUniqueProperty(input: MeterInput): string | null {
  const property = input.unique_property ?? null;
  const problem =
    input.aggregation === "unique_count" && property === null
      ? 'is required for aggregation "unique_count": the event property whose distinct values are counted'
      : input.aggregation !== "unique_count" && property !== null
        ? `applies only to aggregation "unique_count" (this meter's is "${input.aggregation}")`
        : undefined;
  if (problem) {
    throw unprocessable("invalid_unique_property", `unique_property ${problem}`, [
      { field: "unique_property", message: problem },
    ]);
  }
  return property;
}

/**
 * Creates or updates a meter. Dimensions (and stripe_value) left out keep their value. Changing the dimensions of a
 * meter that has events is refused (409 meter_in_use): its rollups are keyed by them. So is making a meter with
 * events a unique_count or no longer one, or changing its unique_property: its distinct values are kept from its
 * first event on (ingest/distinct.ts). The meter row is locked while checking; ingest marks a meter's first events
 * under the same row lock (see dimensions/resolver.ts).
 */
export async function upsertMeter(db: Db, key: string, input: MeterInput): Promise<{ meter: Meter; created: boolean }> {
  const uniqueProperty = checkUniqueProperty(input);
  return db.transaction(async (tx) => {
    const current = await tx.query<{ dimensions: string[]; has_events: boolean; unique_property: string | null }>(
      "SELECT dimensions, has_events, unique_property FROM meters WHERE key = $1 FOR UPDATE",
      [key],
    );
    const was = current.rows[0];
    if (was?.has_events && input.dimensions && !sameList(was.dimensions, input.dimensions)) {
      throw conflict(
        "meter_in_use",
        `meter ${key} has events; its dimensions (${was.dimensions.join(", ") || "none"}) cannot change — define a new meter instead`,
      );
    }
    if (was?.has_events && was.unique_property !== uniqueProperty) {
      throw conflict(
        "meter_in_use",
        `meter ${key} has events; ${was.unique_property ? `it counts distinct values of "${was.unique_property}", which` : "it cannot become a unique_count meter: its distinct values"} cannot change — define a new meter instead`,
      );
    }
    const { rows } = await tx.query<MeterRow>(
      `INSERT INTO meters (key, name, unit, aggregation, stripe_event_name, stripe_scale, dimensions, stripe_value,
                           unique_property)
       VALUES ($1, $2, $3, $4, $5, COALESCE($6::numeric, 1), COALESCE($7::text[], '{}'), COALESCE($8, 'quantity'), $9)
       ON CONFLICT (key) DO UPDATE SET
         name = EXCLUDED.name, unit = EXCLUDED.unit, aggregation = EXCLUDED.aggregation,
         stripe_event_name = EXCLUDED.stripe_event_name,
         stripe_scale = COALESCE($6::numeric, meters.stripe_scale),
         dimensions = COALESCE($7::text[], meters.dimensions),
         stripe_value = COALESCE($8, meters.stripe_value),
         unique_property = EXCLUDED.unique_property,
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
        uniqueProperty,
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
