// Everything an HTTP route may use, built once by the composition root (src/tally.ts).
import type { ApiKeys } from "../auth/keys.js";
import type { MeterCache } from "../catalog/meterCache.js";
import type { Clock } from "../clock.js";
import type { Config } from "../config.js";
import type { CreditLedgers } from "../credits/ledger.js";
import type { MigrationFile } from "../db/migrate.js";
import type { Engine } from "../db/open.js";
import type { ReadRouter } from "../db/replica.js";
import type { Db } from "../db/types.js";
import type { IngestService } from "../ingest/service.js";
import type { Invoices } from "../invoices/service.js";
import type { JobRunner } from "../jobs/runner.js";
import type { LimitsService } from "../limits/service.js";
import type { Logger } from "../logger.js";
import type { Metrics } from "../metrics.js";
import type { KeyRateLimiter } from "./rateLimit.js";

export interface AppContext {
  config: Config;
  db: Db;
  /**
   * Where lag-tolerant reads go (usage series, the CSV export, the dashboard overview, simulations, forecasts):
   * DATABASE_READ_URL's replica while it is close enough behind, else `db`. Nothing else reads from it.
   */
  reads: ReadRouter;
  engine: Engine;
  clock: Clock;
  log: Logger;
  metrics: Metrics;
  keys: ApiKeys;
  migrations: MigrationFile[];
  meters: MeterCache;
  ingest: IngestService;
  jobs: JobRunner;
  limits: LimitsService;
  invoices: Invoices;
  /** Prepaid credits: each customer's ledger, computed on read. */
  credits: CreditLedgers;
  /** Requests per API key per second (TALLY_RATE_LIMIT_RPS / _BURST); every authenticated route takes a token. */
  rateLimit: KeyRateLimiter;
  /** The customer's subscription in effect now and the change scheduled next, as they appear on the customer object. */
  subscriptionOf(customer: string): Promise<{ subscription: CustomerSubscription | null; scheduled: Scheduled | null }>;
  /** Set when shutdown begins: new requests get 503, in-flight ones finish. */
  state: { draining: boolean };
  /** /metrics' text: this process's registry, or in a cluster worker every process's metrics added up. */
  metricsText(): Promise<string>;
}

type Scheduled = { plan: string; start: string };

/** The subscription on the customer object. */
export interface CustomerSubscription {
  plan: string;
  start: string;
  end: string | null;
  trial_end: string | null;
  quantities: Record<string, string>;
  scheduled: Scheduled | null;
}
