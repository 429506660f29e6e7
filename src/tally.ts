// Composition root: opens the database, applies migrations, builds the HTTP app and the jobs,
// and owns start-up and graceful shutdown.
import { once } from "node:events";
import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { ApiKeys } from "./auth/keys.js";
import { subscriptionAt } from "./billing/subscriptions.js";
import { MeterCache } from "./catalog/meterCache.js";
import { type Clock, systemClock } from "./clock.js";
import type { Config } from "./config.js";
import { CreditLedgers } from "./credits/ledger.js";
import { loadMigrations, migrate } from "./db/migrate.js";
import { type OpenedDb, openDatabase } from "./db/open.js";
import { createApp } from "./http/app.js";
import { clientErrorHandler } from "./http/clientError.js";
import type { AppContext } from "./http/context.js";
import { entitlementFastPath } from "./http/fastPath.js";
import { isoTime } from "./http/format.js";
import { KeyRateLimiter } from "./http/rateLimit.js";
import { invoiceJson } from "./http/routes/billing.js";
import { IngestService } from "./ingest/service.js";
import { Invoices } from "./invoices/service.js";
import { JobRunner } from "./jobs/runner.js";
import { tallyJobs } from "./jobs/tallyJobs.js";
import { LimitsService } from "./limits/service.js";
import { createLogger, type Logger } from "./logger.js";
import { createMetrics } from "./metrics.js";

export interface TallyOptions {
  config: Config;
  clock?: Clock;
  logger?: Logger;
  /** An already opened database (tests share one embedded instance per file). */
  database?: OpenedDb;
  /** Close the database on shutdown (default true; false when the caller owns it). */
  ownsDatabase?: boolean;
  /** The dashboard's built page (default: dist/web); tests build their own so a parallel `npm run build` is harmless. */
  webDirectory?: string;
}

export interface Tally {
  ctx: AppContext;
  app: ReturnType<typeof createApp>;
  /** The admin key created on this start (first start, no TALLY_ADMIN_KEY), shown once. */
  createdAdminKey: string | undefined;
  listen(port?: number, host?: string): Promise<string>;
  shutdown(): Promise<void>;
}

export async function createTally(opts: TallyOptions): Promise<Tally> {
  const { config } = opts;
  const log = opts.logger ?? createLogger(config.LOG_LEVEL);
  const clock = opts.clock ?? systemClock;
  const opened =
    opts.database ??
    (await openDatabase({
      databaseUrl: config.DATABASE_URL,
      dataDir: config.TALLY_DATA_DIR,
      forceEngine: config.TALLY_ENGINE,
      poolSize: config.TALLY_DB_POOL_SIZE,
      onPoolError: (err) => log.warn({ err: { message: err.message } }, "idle database connection lost"),
    }));
  const { db, engine } = opened;
  const ownsDatabase = opts.ownsDatabase ?? opts.database === undefined;
  log.info(
    {
      engine,
      backend: db.backend,
      reason: opened.reason,
      dataDir: db.backend === "embedded" ? config.TALLY_DATA_DIR : undefined,
    },
    `database engine: ${engine}`,
  );

  let createdAdminKey: string | undefined;
  const keys = new ApiKeys(db, clock);
  let migrations: Awaited<ReturnType<typeof loadMigrations>>;
  try {
    migrations = await loadMigrations(engine);
    const result = await migrate(db, engine, migrations);
    log.info({ applied: result.applied, alreadyApplied: result.alreadyApplied }, "migrations done");
    await db.withLock("bootstrap-admin-key", async () => {
      if (config.TALLY_ADMIN_KEY) await keys.ensureAdminKey(config.TALLY_ADMIN_KEY);
      else if ((await keys.count()) === 0) createdAdminKey = (await keys.create(["admin"], null)).key;
    });
  } catch (err) {
    if (ownsDatabase) await db.close();
    throw err;
  }

  const metrics = createMetrics();
  const meters = new MeterCache(db);
  const ingest = new IngestService(
    db,
    meters,
    clock,
    {
      jsonMaxBytes: config.TALLY_JSON_MAX_BYTES,
      jsonMaxEvents: config.TALLY_JSON_MAX_EVENTS,
      ndjsonMaxBytes: config.TALLY_NDJSON_MAX_BYTES,
      maxAgeMs: config.TALLY_EVENT_MAX_AGE_DAYS * 86_400_000,
      maxFutureMs: config.TALLY_EVENT_MAX_FUTURE_SECONDS * 1000,
      maxDimensionValues: config.TALLY_MAX_DIMENSION_VALUES,
    },
    log,
    metrics,
  );
  const jobs = new JobRunner(db, log, metrics);
  const credits = new CreditLedgers(db, {
    maxEventAgeMs: config.TALLY_EVENT_MAX_AGE_DAYS * 86_400_000,
    maxEventFutureMs: config.TALLY_EVENT_MAX_FUTURE_SECONDS * 1000,
  });
  const limits = new LimitsService(db, clock, log, metrics, credits);
  const invoices = new Invoices(db, clock, {
    graceMs: config.TALLY_INVOICE_GRACE,
    maxAgeDays: config.TALLY_EVENT_MAX_AGE_DAYS,
    render: invoiceJson,
    credits,
  });
  const stopJobs = new AbortController();
  for (const job of tallyJobs({ db, engine, clock, config, limits, invoices, credits, log, signal: stopJobs.signal }))
    jobs.register(job);
  ingest.onCommitted((batch) => limits.afterIngest(batch));
  limits.onAlert(() => jobs.trigger("deliver-webhooks"));
  try {
    await limits.start();
  } catch (err) {
    if (ownsDatabase) await db.close();
    throw err;
  }
  const ctx: AppContext = {
    config,
    db,
    engine,
    clock,
    log,
    metrics,
    keys,
    migrations,
    meters,
    ingest,
    jobs,
    limits,
    invoices,
    credits,
    rateLimit: new KeyRateLimiter({
      rps: config.TALLY_RATE_LIMIT_RPS,
      burst: config.TALLY_RATE_LIMIT_BURST ?? Math.ceil(2 * config.TALLY_RATE_LIMIT_RPS),
    }),
    subscriptionOf: async (customer) => {
      const sub = await subscriptionAt(db, customer, clock.now());
      return sub ? { plan: sub.plan, start: isoTime(sub.start), end: sub.end ? isoTime(sub.end) : null } : null;
    },
    state: { draining: false },
  };
  const app = createApp(ctx, [], { webDirectory: opts.webDirectory });
  let server: Server | undefined;
  const inFlight = new Set<ServerResponse>();
  let stopped: Promise<void> | undefined;

  return {
    ctx,
    app,
    createdAdminKey,
    async listen(port = config.PORT, host = config.HOST) {
      const fast = entitlementFastPath(ctx);
      server = createServer((req, res) => {
        inFlight.add(res);
        res.once("close", () => inFlight.delete(res));
        if (!fast(req, res)) app(req, res);
      });
      server.on("clientError", clientErrorHandler());
      server.listen(port, host);
      // Longer than load balancers' idle timeouts (often 60 s), so they never reuse a socket Node just closed.
      server.keepAliveTimeout = 65_000;
      server.headersTimeout = 66_000;
      // NDJSON bulk loads (up to 1 GiB by default) may take minutes to stream; Node's default is 5 minutes.
      server.requestTimeout = 3_600_000;
      await once(server, "listening");
      if (config.TALLY_JOBS === "on") jobs.start();
      // A URL to reach it from this machine: bound to every interface (0.0.0.0, ::), that is loopback.
      const address = server.address() as AddressInfo;
      const local = address.address === "0.0.0.0" ? "127.0.0.1" : address.address === "::" ? "::1" : address.address;
      return `http://${local.includes(":") ? `[${local}]` : local}:${address.port}`;
    },
    shutdown() {
      stopped ??= (async () => {
        // New requests get 503 (and Connection: close) from here on, while the port stays open: a client or load
        // balancer sees a clear "retry elsewhere" rather than a refused connection. Requests already in flight
        // finish and are answered; then the port closes. After the timeout, whatever is left is cut.
        ctx.state.draining = true;
        const pending = [...inFlight];
        log.info({ in_flight: pending.length }, "shutting down: finishing in-flight requests");
        if (server) {
          const s = server;
          const deadline = new Promise<void>((resolve) =>
            setTimeout(resolve, config.TALLY_SHUTDOWN_TIMEOUT_MS).unref(),
          );
          const finished = Promise.all(
            pending.map((r) => (r.writableFinished || r.destroyed ? undefined : once(r, "close"))),
          );
          await Promise.race([finished, deadline]);
          const closed = new Promise<void>((resolve) => s.close(() => resolve()));
          s.closeIdleConnections();
          const timer = setTimeout(() => {
            log.warn("shutdown timeout reached: closing remaining connections");
            s.closeAllConnections();
          }, 1_000);
          await closed;
          clearTimeout(timer);
        }
        stopJobs.abort();
        await jobs.stop();
        await limits.stop();
        if (ownsDatabase) await db.close();
        log.info("stopped");
      })();
      return stopped;
    },
  };
}
