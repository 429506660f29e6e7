// Operations endpoints (no auth): liveness, readiness, Prometheus metrics, the OpenAPI document.
import { z } from "zod";
import { pendingMigrations } from "../../db/migrate.js";
import type { AppContext } from "../context.js";
import type { RouteTable } from "../routeTable.js";

const READY_TIMEOUT_MS = 2_000;

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

const readiness = z
  .object({
    status: z.enum(["ready", "not_ready"]),
    engine: z.string(),
    reason: z.string().optional(),
    pending_migrations: z.array(z.string()).optional(),
  })
  .meta({ id: "Readiness" });

export function operationsRoutes(t: RouteTable, ctx: AppContext): void {
  t.add({
    method: "get",
    path: "/healthz",
    summary: "Liveness: 200 while the process runs",
    tags: ["operations"],
    scopes: "public",
    responses: { 200: { description: "alive", schema: z.object({ status: z.literal("ok") }) } },
    handle: () => ({ status: 200, body: { status: "ok" } }),
  });

  t.add({
    method: "get",
    path: "/readyz",
    summary: "Readiness: 200 when the database answers and the schema is current",
    tags: ["operations"],
    scopes: "public",
    responses: {
      200: { description: "ready", schema: readiness },
      503: { description: "not ready", schema: readiness },
    },
    handle: async () => {
      const notReady = (reason: string, extra: object = {}) => ({
        status: 503,
        headers: { "Retry-After": "5" },
        body: { status: "not_ready", engine: ctx.engine, reason, ...extra },
      });
      if (ctx.state.draining) return notReady("shutting down");
      try {
        const pending = await withTimeout(pendingMigrations(ctx.db, ctx.migrations), READY_TIMEOUT_MS);
        if (pending.length > 0) return notReady("migrations pending", { pending_migrations: pending });
      } catch (err) {
        return notReady(`database unavailable: ${(err as Error).message}`);
      }
      return { status: 200, body: { status: "ready", engine: ctx.engine } };
    },
  });

  t.add({
    method: "get",
    path: "/metrics",
    summary: "Prometheus metrics",
    tags: ["operations"],
    scopes: "public",
    responses: { 200: { description: "Prometheus text format", schema: z.string(), contentType: "text/plain" } },
    handle: async ({ res }) => {
      res.setHeader("Content-Type", ctx.metrics.registry.contentType);
      res.status(200).send(await ctx.metricsText());
      return undefined;
    },
  });

  t.add({
    method: "get",
    path: "/openapi.json",
    summary: "This API's OpenAPI 3.1 document, generated from the schemas that validate requests",
    tags: ["operations"],
    scopes: "public",
    responses: { 200: { description: "OpenAPI 3.1 document", schema: z.object({ openapi: z.string() }).loose() } },
    handle: () => ({ status: 200, body: t.openapi({ title: "Tally", version: "1" }) }),
  });
}
