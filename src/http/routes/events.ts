// Ingest (scope ingest) and ingestion receipts (scope ingest or read).
import { z } from "zod";
import { assertCustomerVisible } from "../../auth/keys.js";
import { customerId } from "../../catalog/schemas.js";
import { notFound } from "../../errors.js";
import { eventInput } from "../../ingest/event.js";
import { findEvent } from "../../ingest/store.js";
import type { AppContext } from "../context.js";
import { isoTime } from "../format.js";
import type { RouteTable } from "../routeTable.js";

const ingestResult = z
  .object({
    accepted: z.number().int().meta({ description: "Events stored by this request" }),
    duplicates: z
      .number()
      .int()
      .meta({ description: "Events dropped: same (customer, id) already stored or earlier in the batch" }),
  })
  .meta({ id: "IngestResult" });

const receipt = z
  .object({
    id: z.string(),
    customer: z.string(),
    meter: z.string(),
    value: z.string(),
    timestamp: z.string(),
    properties: z.record(z.string(), z.string()).nullable(),
    received_at: z.string(),
  })
  .meta({ id: "EventReceipt" });

export function eventRoutes(t: RouteTable, ctx: AppContext): void {
  t.add({
    method: "post",
    path: "/v1/events",
    summary: "Ingest a batch of usage events (all or nothing; 202 after commit)",
    tags: ["ingest"],
    scopes: ["ingest"],
    rawBody: {
      description:
        'application/json {"events":[...]} (≤ 10,000 events, ≤ 10 MiB) or application/x-ndjson, one event per line, streamed (≤ 1 GiB by default); Content-Encoding: gzip accepted',
      content: {
        "application/json": { schema: z.object({ events: z.array(eventInput) }).meta({ id: "EventBatch" }) },
        "application/x-ndjson": { schema: eventInput },
      },
    },
    responses: {
      202: { description: "committed", schema: ingestResult },
      403: { description: "a customer-bound key sent events for another customer" },
      413: { description: "too many events or bytes" },
      415: { description: "unsupported content type or encoding" },
      422: {
        description:
          "well-formed events refused: unknown meter, timestamp outside the window, negative value on a non-sum meter",
      },
    },
    handle: async ({ req, res, auth }) => {
      try {
        const result = await ctx.ingest.ingest(
          { stream: req, contentType: req.headers["content-type"], contentEncoding: req.headers["content-encoding"] },
          auth?.customer ?? null,
        );
        return { status: 202, body: result };
      } catch (err) {
        // The rest of an unread body is not worth reading: close the connection after answering.
        if (!req.readableEnded) res.setHeader("Connection", "close");
        throw err;
      }
    },
  });

  t.add({
    method: "get",
    path: "/v1/events/{customer}/{id}",
    summary: "Ingestion receipt: was this event counted? (kept for the dedupe window)",
    tags: ["ingest"],
    scopes: ["ingest", "read"],
    params: z.object({
      customer: customerId,
      id: z.string().min(1).max(128),
    }),
    responses: {
      200: { description: "the stored event and when it was received", schema: receipt },
      404: { description: "no such event arrived within the dedupe window" },
    },
    handle: async ({ params, auth }) => {
      assertCustomerVisible(auth, params.customer);
      const since = ctx.clock.now().getTime() - ctx.config.TALLY_DEDUPE_WINDOW_DAYS * 86_400_000;
      const e = await findEvent(ctx.db, params.customer, params.id, new Date(since));
      if (!e) {
        throw notFound(
          `no event "${params.id}" of customer "${params.customer}" arrived within the last ${ctx.config.TALLY_DEDUPE_WINDOW_DAYS} days`,
        );
      }
      return {
        status: 200,
        body: {
          id: e.id,
          customer: e.customer,
          meter: e.meter,
          value: e.value,
          timestamp: isoTime(e.timestamp),
          properties: e.properties,
          received_at: isoTime(e.receivedAt),
        },
      };
    },
  });
}
