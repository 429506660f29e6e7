// Reading usage (scope read): series per bucket, and the CSV export.

import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { z } from "zod";
import { assertCustomerVisible } from "../../auth/keys.js";
import { getCustomer } from "../../catalog/customers.js";
import { customerId, meterKey, rfc3339 } from "../../catalog/schemas.js";
import { dimensionsObject, parseDimensionRead } from "../../dimensions/query.js";
import { AppError, badRequest, notFound } from "../../errors.js";
import { addBuckets, alignDown, bucketCount } from "../../rollups/buckets.js";
import { exportCsv } from "../../rollups/export.js";
import { type Granularity, runSeriesFigures } from "../../rollups/series.js";
import type { AppContext } from "../context.js";
import { isoTime } from "../format.js";
import type { RouteTable } from "../routeTable.js";

const MAX_BUCKETS: Record<Granularity, { n: number; what: string }> = {
  hour: { n: 31 * 24, what: "31 days" },
  day: { n: 366, what: "366 days" },
  month: { n: 120, what: "120 months" },
};

const granularity = z.enum(["hour", "day", "month"]);

/** Aligns [from, to) down to the granularity and enforces the range caps. */
function alignedRange(g: Granularity, from: Date, to: Date): { from: Date; to: Date } {
  const a = alignDown(from, g);
  const b = alignDown(to, g);
  if (b <= a) {
    throw badRequest(
      "invalid_range",
      `'to' must be at least one ${g} after 'from' (after aligning both down to the ${g})`,
      [{ field: "to", message: `must be later than from by at least one ${g}` }],
    );
  }
  if (bucketCount(a, b, g) > MAX_BUCKETS[g].n) {
    throw badRequest("range_too_large", `a ${g} series may span at most ${MAX_BUCKETS[g].what}`, [
      { field: "to", message: `at most ${MAX_BUCKETS[g].what} after from for granularity ${g}` },
    ]);
  }
  return { from: a, to: b };
}

const point = z.object({
  start: z.string(),
  end: z.string(),
  value: z.string(),
  count: z.number().int(),
  dimensions: z
    .record(z.string(), z.string().nullable())
    .optional()
    .meta({ description: "Grouped reads: the values of the group_by dimensions (null: the property was absent)" }),
});

/** group_by and filter[...] as documented; they are read from the raw query (see dimensions/query.ts). */
const dimensionParams = {
  group_by: z.string().optional().meta({
    description: "Comma-separated dimensions of the meter to group by (a subset of its dimensions)",
    example: "model,token_type",
  }),
  filter: z
    .record(z.string(), z.union([z.string(), z.array(z.string())]))
    .optional()
    .meta({
      description:
        "filter[<dimension>]=<value>: keep usage with that value (repeat a key for OR; different keys AND; an empty value matches an absent property)",
      param: { style: "deepObject", explode: true },
    }),
};
const usageResponse = z
  .object({
    customer: z.string(),
    meter: z.string(),
    granularity,
    data: z.array(point),
    as_of: z.string().meta({ description: "Every event acknowledged before this time is counted in the answer" }),
  })
  .meta({ id: "UsageSeries" });

export function usageRoutes(t: RouteTable, ctx: AppContext): void {
  seriesRoute(t, ctx);
  exportRoute(t, ctx);
}

function seriesRoute(t: RouteTable, ctx: AppContext): void {
  t.add({
    method: "get",
    path: "/v1/usage",
    summary: "Usage per bucket: the meter's aggregation per hour, day or month",
    tags: ["reading"],
    scopes: ["read"],
    query: z.object({
      customer: customerId,
      meter: meterKey,
      granularity,
      from: rfc3339,
      to: rfc3339,
      ...dimensionParams,
    }),
    responses: {
      200: { description: "buckets with events, ordered by start", schema: usageResponse },
      404: { description: "no such customer (or not visible to this key)" },
      422: { description: "unknown meter" },
    },
    handle: async ({ query, auth, req }) => {
      assertCustomerVisible(auth, query.customer);
      // The in-memory meter cache (fresh within a second, reloaded on a miss) saves a query on a hot read path.
      const aggregation = await ctx.meters.lookup(query.meter);
      if (!aggregation) {
        throw new AppError(422, "unknown_meter", `unknown meter "${query.meter}"`, {
          errors: [{ field: "meter", message: "no such meter" }],
        });
      }
      const dims = parseDimensionRead(
        req.query as Record<string, unknown>,
        ctx.meters.dimensionsOf(query.meter),
        `meter ${query.meter}`,
      );
      const range = alignedRange(query.granularity, query.from, query.to);
      const now = ctx.clock.now();
      const series = {
        granularity: query.granularity,
        ...range,
        customer: query.customer,
        meter: query.meter,
        ...dims,
      };
      // Lag-tolerant: the read replica when there is one close enough behind; as_of then says how far it replayed.
      const { rows, asOf } = await ctx.reads.run(async (r) => ({
        rows: await runSeriesFigures(r.db, series, aggregation),
        asOf: r.asOf(now),
      }));
      // On the primary: a customer created a moment ago exists, replayed or not.
      if (rows.length === 0 && !(await getCustomer(ctx.db, query.customer)))
        throw notFound(`no customer ${query.customer}`);
      // A grouped answer repeats each bucket once per group: its bounds are formatted once.
      const bounds = new Map<number, { start: string; end: string }>();
      const boundsOf = (bucket: Date) => {
        let b = bounds.get(bucket.getTime());
        if (!b) {
          b = { start: isoTime(bucket), end: isoTime(addBuckets(bucket, query.granularity, 1)) };
          bounds.set(bucket.getTime(), b);
        }
        return b;
      };
      return {
        status: 200,
        body: {
          customer: query.customer,
          meter: query.meter,
          granularity: query.granularity,
          data: rows.map((r) => ({
            ...boundsOf(r.bucket),
            value: r.value,
            count: Number(r.event_count),
            ...(dims.groupBy.length > 0 ? { dimensions: dimensionsObject(dims.groupBy, r.dimension_values) } : {}),
          })),
          as_of: isoTime(asOf),
        },
      };
    },
  });
}

function exportRoute(t: RouteTable, ctx: AppContext): void {
  t.add({
    method: "get",
    path: "/v1/usage/export",
    summary: "Usage per bucket as CSV (start,end,customer,meter,value,count[,dimensions]), streamed",
    tags: ["reading"],
    scopes: ["read"],
    query: z.object({
      customer: customerId.optional(),
      meter: meterKey.optional().meta({ description: "Only this meter (default: every meter)" }),
      granularity: granularity.default("day"),
      from: rfc3339,
      to: rfc3339,
      ...dimensionParams,
    }),
    responses: {
      200: {
        description:
          "CSV, header row start,end,customer,meter,value,count; grouped (group_by), a last column `dimensions` holds the values as a JSON object",
        schema: z.string(),
        contentType: "text/csv",
      },
      404: { description: "no such customer (or not visible to this key)" },
    },
    handle: async ({ query, auth, res, req }) => {
      const isAdmin = auth?.scopes.includes("admin") ?? false;
      const customer = query.customer ?? auth?.customer ?? undefined;
      if (!customer && !isAdmin) {
        throw badRequest("customer_required", "name a customer; only admin keys export every customer", [
          { field: "customer", message: "required for non-admin keys" },
        ]);
      }
      if (customer) assertCustomerVisible(auth, customer);
      await ctx.meters.snapshot();
      if (query.meter && !(await ctx.meters.lookup(query.meter))) {
        throw new AppError(422, "unknown_meter", `unknown meter "${query.meter}"`, {
          errors: [{ field: "meter", message: "no such meter" }],
        });
      }
      const dims = parseDimensionRead(
        req.query as Record<string, unknown>,
        ctx.meters.dimensionsOf(query.meter),
        query.meter ? `meter ${query.meter}` : "any meter",
      );
      const range = alignedRange(query.granularity, query.from, query.to);
      // Pull the first chunk before answering: a database error then is still a clean problem+json (and a replica
      // that fails then is replaced by the primary).
      const { iterator, first } = await ctx.reads.run(async (r) => {
        const chunks = exportCsv(r.db, {
          granularity: query.granularity,
          ...range,
          customer,
          meter: query.meter,
          ...dims,
        });
        const iterator = chunks[Symbol.asyncIterator]();
        return { iterator, first: await iterator.next() };
      });
      const name = `usage-${customer ?? "all"}-${query.granularity}-${isoTime(range.from).slice(0, 10)}.csv`.replace(
        /[^\w.@-]/g,
        "_",
      );
      res.status(200).setHeader("Content-Type", "text/csv; charset=utf-8");
      res.setHeader("Content-Disposition", `attachment; filename="${name}"`);
      await pipeline(
        Readable.from(
          (async function* () {
            if (!first.done) yield first.value;
            for (let n = await iterator.next(); !n.done; n = await iterator.next()) yield n.value;
          })(),
        ),
        res,
      );
      return undefined;
    },
  });
}
