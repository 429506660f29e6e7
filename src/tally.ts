// Composition root: opens the database, applies migrations, wires the services, the HTTP app and the jobs, and owns
// start-up and graceful shutdown.
import { ApiKeys } from "./auth/keys.js";
import { scheduledChange } from "./billing/changes.js";
import { subscriptionAt } from "./billing/subscriptions.js";
import { MeterCache } from "./catalog/meterCache.js";
import { type Clock, systemClock } from "./clock.js";
import type { Config } from "./config.js";
import { CreditLedgers } from "./credits/ledger.js";
import { loadMigrations, migrate } from "./db/migrate.js";
import { type OpenedDb, openDatabase, openReadReplica } from "./db/open.js";
import { ReadRouter } from "./db/replica.js";
import type { Db } from "./db/types.js";
import { AppError } from "./errors.js";
import { createApp } from "./http/app.js";
import type { AppContext } from "./http/context.js";
import { isoTime } from "./http/format.js";
import { KeyRateLimiter } from "./http/rateLimit.js";
import { quantitiesJson } from "./http/routes/subscriptions.js";
import { HttpServer } from "./http/server.js";

/** The start-up line main.ts and the cluster primary log. */
export { listeningLine } from "./http/server.js";

import { IngestService } from "./ingest/service.js";
import { Invoices } from "./invoices/service.js";
import { JobRunner } from "./jobs/runner.js";
import { tallyJobs } from "./jobs/tallyJobs.js";
import { LimitsService } from "./limits/service.js";
import { createLogger, type Logger } from "./logger.js";
import { createMetrics, type Metrics } from "./metrics.js";

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
  /** A cluster worker (TALLY_WORKERS > 1): its id, and /metrics' text of every process added up. */
  worker?: { id: string; metricsText: () => Promise<string> };
}

export interface Tally {
  ctx: AppContext;
  app: ReturnType<typeof createApp>;
  /** The admin key created on this start (first start, no TALLY_ADMIN_KEY), shown once. */
  createdAdminKey: string | undefined;
  /** Listens, and starts the jobs' schedules (TALLY_JOBS=on). */
  listen(port?: number, host?: string): Promise<string>;
  /** Starts the jobs' schedules if TALLY_JOBS=on (a cluster's primary runs jobs without listening). */
  startJobs(): void;
  shutdown(): Promise<void>;
}

export async function createTally(opts: TallyOptions): Promise<Tally> {
  const { config } = opts;
  const log = opts.logger ?? createLogger(config.LOG_LEVEL);
  const clock = opts.clock ?? systemClock;
  const opened = opts.database ?? (await openConfigured(config, log));
  const ownsDatabase = opts.ownsDatabase ?? opts.database === undefined;
  const { db, engine } = opened;
  log.info(
    {
      engine,
      backend: db.backend,
      reason: opened.reason,
      dataDir: db.backend === "embedded" ? config.TALLY_DATA_DIR : undefined,
    },
    `database engine: ${engine}`,
  );
  // A start that fails leaves no connection behind (unless the caller owns the database).
  const orClose = async <T>(step: () => Promise<T>): Promise<T> => {
    try {
      return await step();
    } catch (err) {
      if (ownsDatabase) await db.close();
      throw err;
    }
  };
  const keys = new ApiKeys(db, clock);
  const { migrations, createdAdminKey } = await orClose(() => prepareDatabase(opened, keys, config, log));
  const services = wireServices({ db, engine, clock, config, log });
  await orClose(() => services.limits.start());
  const reads = await orClose(() => readRouter(config, db, services.metrics, log));
  const ctx = appContext({ config, db, engine, clock, log, keys, migrations, reads: reads.router, ...services });
  if (opts.worker) ctx.metricsText = opts.worker.metricsText;
  const app = createApp(ctx, [], { webDirectory: opts.webDirectory });
  const http = new HttpServer(ctx, app, opts.worker && workerRequests(services.metrics, opts.worker.id));
  let stopped: Promise<void> | undefined;
  let jobsStarted = false;
  const startJobs = () => {
    if (config.TALLY_JOBS === "on" && !jobsStarted) services.jobs.start();
    jobsStarted = true;
  };
  return {
    ctx,
    app,
    createdAdminKey,
    async listen(port = config.PORT, host = config.HOST) {
      const url = await http.listen(port, host);
      startJobs();
      return url;
    },
    startJobs,
    shutdown() {
      stopped ??= shutdown({ ctx, http, services, db: ownsDatabase ? db : undefined, reads });
      return stopped;
    },
  };
}

/** Counts the requests a cluster worker answered, labelled with its id: how the port's load is spread. */
function workerRequests(metrics: Services["metrics"], worker: string): () => void {
  const counter = metrics.counter("tally_worker_requests_total", "HTTP requests answered, by cluster worker", [
    "worker",
  ]);
  const child = counter.labels({ worker });
  return () => child.inc();
}

function openConfigured(config: Config, log: Logger): Promise<OpenedDb> {
  return openDatabase({
    databaseUrl: config.DATABASE_URL,
    dataDir: config.TALLY_DATA_DIR,
    forceEngine: config.TALLY_ENGINE,
    poolSize: config.TALLY_DB_POOL_SIZE,
    onPoolError: (err) => log.warn({ err: { message: err.message } }, "idle database connection lost"),
  });
}

/** Applies the migrations and makes sure an admin key exists (creating one on a first start without TALLY_ADMIN_KEY). */
async function prepareDatabase({ db, engine }: OpenedDb, keys: ApiKeys, config: Config, log: Logger) {
  let createdAdminKey: string | undefined;
  const migrations = await loadMigrations(engine);
  const result = await migrate(db, engine, migrations);
  log.info({ applied: result.applied, alreadyApplied: result.alreadyApplied }, "migrations done");
  await db.withLock("bootstrap-admin-key", async () => {
    if (config.TALLY_ADMIN_KEY) await keys.ensureAdminKey(config.TALLY_ADMIN_KEY);
    else if ((await keys.count()) === 0) createdAdminKey = (await keys.create(["admin"], null)).key;
  });
  return { migrations, createdAdminKey };
}

interface Wiring {
  db: Db;
  engine: OpenedDb["engine"];
  clock: Clock;
  config: Config;
  log: Logger;
}

type Services = ReturnType<typeof wireServices>;

/** The services, the jobs registered on their runner, and the hooks between them (ingest → limits → webhooks). */
function wireServices({ db, engine, clock, config, log }: Wiring) {
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
      dedupeWindowMs: config.TALLY_DEDUPE_WINDOW_DAYS * 86_400_000,
      dedupeHotMaxBytes: config.TALLY_DEDUPE_HOT_MAX_MB * 1024 * 1024,
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
    credits,
  });
  const stopJobs = new AbortController();
  for (const job of tallyJobs({ db, engine, clock, config, limits, invoices, credits, log, signal: stopJobs.signal }))
    jobs.register(job);
  ingest.onCommitted((batch) => limits.afterIngest(batch));
  limits.onAlert(() => jobs.trigger("deliver-webhooks"));
  return { metrics, meters, ingest, jobs, credits, limits, invoices, stopJobs };
}

/**
 * Where lag-tolerant reads go: DATABASE_READ_URL's replica while it is within TALLY_READ_MAX_LAG, else the primary
 * (counted in tally_read_fallbacks_total); without DATABASE_READ_URL, always the primary.
 */
async function readRouter(config: Config, db: Db, metrics: Metrics, log: Logger) {
  const url = config.DATABASE_READ_URL;
  const replica = url
    ? openReadReplica({
        url,
        poolSize: config.TALLY_DB_POOL_SIZE,
        onPoolError: (err) => log.warn({ err: { message: err.message } }, "idle read replica connection lost"),
      })
    : undefined;
  const fallbacks = metrics.counter(
    "tally_read_fallbacks_total",
    "Lag-tolerant reads served by the primary although DATABASE_READ_URL is set, by reason",
    ["reason"],
  );
  const lag = metrics.gauge(
    "tally_read_replica_lag_seconds",
    "How far the read replica is behind (last check)",
    [],
    "max",
  );
  const router = new ReadRouter(db, replica, {
    maxLagMs: config.TALLY_READ_MAX_LAG,
    onFallback: (reason) => fallbacks.inc({ reason }),
    onCheck: ({ usable, lagMs, reason, change }) => {
      if (lagMs !== null) lag.set(lagMs / 1000);
      if (!change) return;
      if (usable) log.info({ lag_ms: lagMs }, "read replica in use for lag-tolerant reads");
      else log.warn({ reason, lag_ms: lagMs }, "read replica not used: lag-tolerant reads go to the primary");
    },
    retryOnPrimary: (err) => err instanceof AppError && err.status === 404,
  });
  try {
    await router.start();
  } catch (err) {
    await replica?.close();
    throw err;
  }
  return {
    router,
    async close() {
      await router.stop();
      await replica?.close();
    },
  };
}

function appContext(w: Wiring & Services & Pick<AppContext, "keys" | "migrations" | "reads">): AppContext {
  const { config, db, clock } = w;
  return {
    config,
    db,
    engine: w.engine,
    clock,
    log: w.log,
    metrics: w.metrics,
    keys: w.keys,
    migrations: w.migrations,
    reads: w.reads,
    meters: w.meters,
    ingest: w.ingest,
    jobs: w.jobs,
    limits: w.limits,
    invoices: w.invoices,
    credits: w.credits,
    rateLimit: new KeyRateLimiter({
      rps: config.TALLY_RATE_LIMIT_RPS,
      burst: config.TALLY_RATE_LIMIT_BURST ?? Math.ceil(2 * config.TALLY_RATE_LIMIT_RPS),
    }),
    subscriptionOf: async (customer) => {
      const now = clock.now();
      const [sub, next] = await Promise.all([subscriptionAt(db, customer, now), scheduledChange(db, customer, now)]);
      const scheduled = next ? { plan: next.plan, start: isoTime(next.start) } : null;
      const subscription = sub && {
        plan: sub.plan,
        start: isoTime(sub.start),
        end: sub.end ? isoTime(sub.end) : null,
        trial_end: sub.trialEnd ? isoTime(sub.trialEnd) : null,
        quantities: quantitiesJson(sub, now),
        scheduled,
      };
      return { subscription, scheduled };
    },
    state: { draining: false },
    metricsText: () => w.metrics.registry.metrics(),
  };
}

/**
 * New requests get 503 (and Connection: close) from here on, while the port stays open: a client or load balancer
 * sees a clear "retry elsewhere" rather than a refused connection. Requests already in flight finish and are
 * answered; then the port closes, the jobs stop, and the database closes (`db`, when Tally owns it).
 */
async function shutdown(s: {
  ctx: AppContext;
  http: HttpServer;
  services: Services;
  db: Db | undefined;
  reads: { close(): Promise<void> };
}) {
  const { ctx, services } = s;
  ctx.state.draining = true;
  await s.http.drain(ctx.config.TALLY_SHUTDOWN_TIMEOUT_MS, ctx.log);
  services.stopJobs.abort();
  await services.jobs.stop();
  await services.limits.stop();
  await s.reads.close();
  if (s.db) await s.db.close();
  ctx.log.info("stopped");
}
