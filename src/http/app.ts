// The Express application: security headers, metrics, request logs, the route table, problem+json errors.
import express, { type Express } from "express";
import helmet from "helmet";
import { requireScope } from "../auth/keys.js";
import type { AppContext } from "./context.js";
import { dashboardPages } from "./dashboardPages.js";
import { errorHandler, sendProblem } from "./problem.js";
import { rateLimited } from "./rateLimit.js";
import { billingRoutes } from "./routes/billing.js";
import { creditRoutes } from "./routes/credits.js";
import { dashboardRoutes } from "./routes/dashboard.js";
import { eventRoutes } from "./routes/events.js";
import { insightRoutes } from "./routes/insights.js";
import { invoiceRoutes } from "./routes/invoices.js";
import { jobRoutes } from "./routes/jobs.js";
import { limitRoutes } from "./routes/limits.js";
import { operationsRoutes } from "./routes/operations.js";
import { setupRoutes } from "./routes/setup.js";
import { stripeRoutes } from "./routes/stripe.js";
import { subscriptionRoutes } from "./routes/subscriptions.js";
import { usageRoutes } from "./routes/usage.js";
import { createRouteTable, EXACT_PATHS, type RouteTable } from "./routeTable.js";

type RouteModule = (t: RouteTable, ctx: AppContext) => void;

const ROUTES: RouteModule[] = [
  operationsRoutes,
  setupRoutes,
  eventRoutes,
  usageRoutes,
  billingRoutes,
  subscriptionRoutes,
  insightRoutes,
  invoiceRoutes,
  creditRoutes,
  limitRoutes,
  jobRoutes,
  stripeRoutes,
  dashboardRoutes,
];

/**
 * The OpenAPI document without a running Tally (scripts/openapi.ts, for the clients' generated types): registering
 * routes reads nothing from the context — only their handlers do — so a context that refuses every use is enough.
 */
export function openapiDocument(info = { title: "Tally", version: "1" }): object {
  const table = createRouteTable();
  const unused = new Proxy({} as AppContext, {
    get(_target, name) {
      throw new Error(`route registration read ctx.${String(name)}: only handlers may use the context`);
    },
  });
  for (const add of ROUTES) add(table, unused);
  return table.openapi(info);
}

export function createApp(
  ctx: AppContext,
  extraRoutes: RouteModule[] = [],
  opts: { webDirectory?: string | undefined } = {},
): Express {
  const app = express();
  app.disable("x-powered-by");
  // API answers are not cached by clients; hashing every body for an ETag only costs time.
  app.set("etag", false);
  app.set("query parser", "simple");
  // One spelling per path: /EMBED/customer or /v1/meters/ would otherwise reach a route whose page or client reads
  // the path exactly (the embed page checks it case-sensitively) and do something else there.
  app.set("case sensitive routing", true);
  app.set("strict routing", true);
  app.use(helmet());

  app.use((req, res, next) => {
    const started = process.hrtime.bigint();
    res.on("finish", () => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const route = (res.locals.route as string | undefined) ?? "unmatched";
      ctx.metrics.httpDuration.observe({ method: req.method, route, status: String(res.statusCode) }, seconds);
      ctx.log.debug(
        { method: req.method, route, path: req.path, status: res.statusCode, ms: Math.round(seconds * 1e4) / 10 },
        "request",
      );
    });
    if (ctx.state.draining && req.path !== "/healthz" && req.path !== "/readyz") {
      res.setHeader("Connection", "close");
      res.setHeader("Retry-After", "5");
      sendProblem(res, 503, "shutting_down", "Tally is shutting down; retry on another instance or shortly");
      return;
    }
    next();
  });

  const table = createRouteTable();
  for (const add of [...ROUTES, ...extraRoutes]) add(table, ctx);
  const router = express.Router(EXACT_PATHS);
  const refused = ctx.metrics.counter("tally_rate_limited_total", "Requests refused by the per-key rate limit", []);
  table.mount(router, {
    authenticate: (req) => ctx.keys.authenticate(req.headers.authorization),
    requireScope,
    limitRate: (auth) => {
      const wait = ctx.rateLimit.take(auth.keyId);
      if (wait === 0) return;
      refused.inc();
      throw rateLimited(ctx.rateLimit, wait);
    },
    jsonLimitBytes: 1024 * 1024,
  });
  app.use(router);
  app.use(dashboardPages({ embedOrigins: ctx.config.TALLY_EMBED_ORIGINS, directory: opts.webDirectory }));
  app.locals.routes = table.list();

  app.use((req, res) => {
    sendProblem(res, 404, "route_not_found", `no route ${req.method} ${req.path}`);
  });
  app.use(errorHandler(ctx.log));
  return app;
}
