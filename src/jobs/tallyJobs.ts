// The jobs Tally runs, with their schedules. Later capabilities add theirs here.
import type { Clock } from "../clock.js";
import type { Config } from "../config.js";
import type { CreditLedgers } from "../credits/ledger.js";
import { analyzeChangedTables } from "../db/analyze.js";
import type { Engine } from "../db/open.js";
import type { Db } from "../db/types.js";
import { finalizeInvoices } from "../invoices/finalize.js";
import type { Invoices } from "../invoices/service.js";
import type { LimitsService } from "../limits/service.js";
import type { Logger } from "../logger.js";
import { RefreshPacer, refreshRollups } from "../rollups/refresh.js";
import { createCreditItemSync } from "../stripe/credits.js";
import { createFeeItemSync } from "../stripe/feeItems.js";
import { createInvoiceItemSync } from "../stripe/invoiceItems.js";
import { createStripeSync } from "../stripe/sync.js";
import { deliverDue } from "../webhooks/outbox.js";
import { pruneExpired } from "./prune.js";
import type { Job } from "./runner.js";

interface JobDeps {
  db: Db;
  engine: Engine;
  clock: Clock;
  config: Config;
  limits: LimitsService;
  invoices: Invoices;
  credits: CreditLedgers;
  log: Logger;
  /** Aborted at shutdown: long jobs (a Stripe backlog) stop between requests instead of holding shutdown. */
  signal?: AbortSignal;
}

export function tallyJobs(d: JobDeps): Job[] {
  const stripe = createStripeSync(d);
  const invoiceItems = createInvoiceItemSync(d);
  const creditItems = createCreditItemSync(d);
  const feeItems = createFeeItemSync(d);
  const pacer = new RefreshPacer();
  return [
    {
      name: "refresh-rollups",
      schedule: d.config.TALLY_CRON_REFRESH,
      // Scheduled runs are paced on the embedded engine (hours still taking events wait); asked-for runs are not.
      run: async ({ scheduled }) => ({
        ...(await refreshRollups(d.db, d.engine, d.clock.now(), { pacer: scheduled ? pacer : undefined })),
      }),
    },
    {
      name: "evaluate-limits",
      schedule: d.config.TALLY_CRON_LIMITS,
      run: async () => ({ ...(await d.limits.evaluateAll()) }),
    },
    {
      name: "deliver-webhooks",
      schedule: d.config.TALLY_CRON_WEBHOOKS,
      run: async () => ({
        ...(await deliverDue(d.db, d.clock, d.log, {
          retryBaseMs: d.config.TALLY_WEBHOOK_RETRY_BASE_MS,
          allowPrivate: d.config.TALLY_WEBHOOK_ALLOW_PRIVATE,
        })),
      }),
    },
    {
      name: "prune-expired",
      schedule: "0 7 * * * *",
      run: async () => ({
        ...(await pruneExpired(
          d.db,
          d.clock.now(),
          d.config.TALLY_DEDUPE_WINDOW_DAYS,
          d.config.TALLY_EVENT_MAX_AGE_DAYS,
          d.config.TALLY_DEDUPE_HOT_MAX_MB * 1024 * 1024,
        )),
      }),
    },
    {
      // The embedded engine has no autovacuum: this keeps its planner statistics (a server's autovacuum does).
      name: "analyze-tables",
      schedule: d.db.backend === "embedded" ? "30 */10 * * * *" : undefined,
      run: async () => ({ ...(await analyzeChangedTables(d.db)) }),
    },
    {
      name: "finalize-invoices",
      schedule: d.config.TALLY_CRON_FINALIZE,
      run: async () => ({ ...(await finalizeInvoices(d.invoices, d.log)) }),
    },
    {
      name: "sync-stripe",
      schedule: d.config.TALLY_CRON_STRIPE,
      run: async () => {
        const meterEvents = await stripe.run();
        // Then the adjustments of final invoices, and the credits applied to closed periods, as invoice items.
        const items = meterEvents.enabled ? await invoiceItems.run() : undefined;
        const credits = meterEvents.enabled ? await creditItems.run() : undefined;
        // With TALLY_STRIPE_FEES=invoice_items, the base fees and fixed charges of final invoices too.
        const fees = meterEvents.enabled ? await feeItems.run() : undefined;
        return {
          ...meterEvents,
          ...(items ? { invoice_items: items } : {}),
          ...(credits ? { credits } : {}),
          ...(fees ? { fees } : {}),
        };
      },
    },
  ];
}
