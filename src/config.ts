// Configuration: one zod schema over the environment, parsed once at start; every bad variable is reported together.
import { availableParallelism } from "node:os";
import { validate as validateCron } from "node-cron";
import { z } from "zod";
import { parseIsoDuration } from "./duration.js";

const cron = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .refine((v) => validateCron(v), { message: "not a valid node-cron expression" });

const positiveInt = (fallback: number) => z.coerce.number().int().positive().default(fallback);

const emptyAsUnset = (v: unknown) => (v === "" ? undefined : v);

// Node's timers fire at once for delays above 2^31 - 1 ms (about 24.8 days).
const MAX_TIMER_MS = 2_147_483_647;

/** An ISO 8601 duration ("PT1H", src/duration.ts), as milliseconds; `timer`: longer than zero, short enough for one. */
const isoDuration = (fallback: string, opts: { timer?: boolean } = {}) =>
  z
    .string()
    .default(fallback)
    .transform((text, ctx) => {
      const ms = parseIsoDuration(text);
      if (ms === undefined) {
        ctx.addIssue("not an ISO 8601 duration of weeks, days, hours, minutes or seconds (e.g. PT30S, PT2M, P1D)");
        return z.NEVER;
      }
      if (opts.timer && (ms <= 0 || ms > MAX_TIMER_MS)) {
        ctx.addIssue("must be longer than zero and at most 24 days");
        return z.NEVER;
      }
      return ms;
    });

// A CSP source for frame-ancestors: an origin (scheme://host[:port], host may start with "*."), or 'self'.
const FRAME_SOURCE = /^(?:'self'|https?:\/\/(?:\*\.)?[a-z0-9.-]+(?::\d{1,5})?)$/i;

/** Origins allowed to frame /embed/customer, separated by spaces or commas; empty → none. */
const embedOrigins = z
  .string()
  .default("")
  .transform((text, ctx) => {
    const origins = text.split(/[\s,]+/).filter((o) => o !== "" && o !== "'none'");
    const bad = origins.filter((o) => !FRAME_SOURCE.test(o));
    if (bad.length) {
      ctx.addIssue(`not an origin (https://portal.example.com, https://*.example.com or 'self'): ${bad.join(", ")}`);
      return z.NEVER;
    }
    return origins;
  });

/** `auto`: one worker per core this process may use; else a whole number of workers. */
const workers = z
  .string()
  .default("1")
  .transform((text, ctx) => {
    if (text.trim().toLowerCase() === "auto") return availableParallelism();
    const n = Number(text);
    if (!Number.isInteger(n) || n < 1 || n > 1024) {
      ctx.addIssue("must be auto or a whole number from 1 to 1024");
      return z.NEVER;
    }
    return n;
  });

const postgresUrl = z
  .string()
  .regex(/^postgres(ql)?:\/\//, "must be a postgres:// or postgresql:// URL")
  .optional();

const fields = z.object({
  PORT: z.coerce.number().int().min(0).max(65535).default(3000),
  HOST: z.string().default("0.0.0.0"),
  DATABASE_URL: z.preprocess(emptyAsUnset, postgresUrl),
  /** A streaming replica of DATABASE_URL for lag-tolerant reads (usage, exports, dashboard, simulations, forecasts). */
  DATABASE_READ_URL: z.preprocess(emptyAsUnset, postgresUrl),
  /** In ms. A replica further behind than this (or down) serves no reads: they go to the primary. */
  TALLY_READ_MAX_LAG: isoDuration("PT10S", { timer: true }),
  /** HTTP worker processes on one port (node:cluster); the primary process runs the jobs. */
  TALLY_WORKERS: workers,
  TALLY_DATA_DIR: z.string().min(1).default("./data"),
  TALLY_ENGINE: z.preprocess(emptyAsUnset, z.enum(["timescale", "postgres"]).optional()),
  TALLY_ADMIN_KEY: z.preprocess(emptyAsUnset, z.string().min(16, "must be at least 16 characters").optional()),
  STRIPE_SECRET_KEY: z.preprocess(emptyAsUnset, z.string().optional()),
  STRIPE_API_BASE: z.preprocess(emptyAsUnset, z.url().optional()),
  TALLY_CRON_REFRESH: cron("*/10 * * * * *"),
  TALLY_CRON_LIMITS: cron("*/30 * * * * *"),
  TALLY_CRON_STRIPE: cron("0 */5 * * * *"),
  TALLY_CRON_WEBHOOKS: cron("*/5 * * * * *"),
  TALLY_CRON_FINALIZE: cron("0 */5 * * * *"),
  /** Milliseconds after a period ends during which its invoices stay drafts (late events still count). */
  TALLY_INVOICE_GRACE: isoDuration("PT1H"),
  TALLY_WEBHOOK_RETRY_BASE_MS: positiveInt(30_000),
  // Webhook endpoints on loopback, private or link-local addresses (checked at registration and at each delivery).
  TALLY_WEBHOOK_ALLOW_PRIVATE: z
    .enum(["true", "false"], { message: "must be true or false" })
    .default("false")
    .transform((v) => v === "true"),
  TALLY_STRIPE_METER_API: z.enum(["v1", "v2"]).default("v1"),
  // usage_only: Stripe's own subscription prices carry base fees and seats; invoice_items: Tally sends its prorated
  // base-fee and fixed-charge lines as invoice items (for Stripe subscriptions with metered prices only).
  TALLY_STRIPE_FEES: z.enum(["usage_only", "invoice_items"]).default("usage_only"),
  TALLY_STRIPE_CONCURRENCY: positiveInt(4),
  // Unset: 25 for test-mode keys (Stripe's sandbox limit), 100 otherwise (see stripeMaxRps).
  TALLY_STRIPE_MAX_RPS: z.preprocess(emptyAsUnset, z.coerce.number().int().positive().optional()),
  TALLY_STRIPE_TIMEOUT_MS: positiveInt(10_000),
  TALLY_STRIPE_BACKOFF_MS: positiveInt(500),
  TALLY_JOBS: z.enum(["on", "off"]).default("on"),
  // A lock (job, migrations) holds a connection while the work under it queries on another.
  TALLY_DB_POOL_SIZE: z.coerce
    .number()
    .int()
    .min(2, "must be at least 2 (a lock holds one connection while the work under it uses another)")
    .default(10),
  TALLY_DEDUPE_WINDOW_DAYS: positiveInt(35),
  /** The hot dedupe key table is rotated once it is a day old or larger than this (heap and index). */
  TALLY_DEDUPE_HOT_MAX_MB: positiveInt(512),
  TALLY_EVENT_MAX_AGE_DAYS: positiveInt(35),
  TALLY_EVENT_MAX_FUTURE_SECONDS: z.coerce.number().int().min(0).default(300),
  TALLY_JSON_MAX_BYTES: positiveInt(10 * 1024 * 1024),
  TALLY_JSON_MAX_EVENTS: positiveInt(10_000),
  TALLY_NDJSON_MAX_BYTES: positiveInt(1024 * 1024 * 1024),
  TALLY_SHUTDOWN_TIMEOUT_MS: positiveInt(25_000),
  // In ms. The longest graceful shutdown; then the process exits 1 (the in-flight drain above fits inside it).
  TALLY_SHUTDOWN_TIMEOUT: isoDuration("PT30S", { timer: true }),
  TALLY_MAX_DIMENSION_VALUES: positiveInt(10_000),
  TALLY_EMBED_ORIGINS: embedOrigins,
  TALLY_RATE_LIMIT_RPS: z.coerce.number().min(0).max(1_000_000_000).default(2000),
  TALLY_RATE_LIMIT_BURST: z.preprocess(emptyAsUnset, z.coerce.number().int().positive().optional()),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
});

export const configSchema = fields.superRefine((c, ctx) => {
  // The embedded database is one PGlite inside one process: other processes cannot open its data directory.
  if (c.TALLY_WORKERS > 1 && !c.DATABASE_URL) {
    ctx.addIssue({
      code: "custom",
      path: ["TALLY_WORKERS"],
      message: `is ${c.TALLY_WORKERS}, but the embedded database belongs to one process: set DATABASE_URL to a server, or TALLY_WORKERS=1`,
    });
  }
  if (c.DATABASE_READ_URL && !c.DATABASE_URL) {
    ctx.addIssue({
      code: "custom",
      path: ["DATABASE_READ_URL"],
      message: "is a replica of DATABASE_URL's server, but DATABASE_URL is unset",
    });
  }
});

export type Config = z.infer<typeof configSchema>;

/** Client-side request rate for Stripe: the configured one, else 25/s for sandbox keys and 100/s for live ones. */
export function stripeMaxRps(config: Pick<Config, "STRIPE_SECRET_KEY" | "TALLY_STRIPE_MAX_RPS">): number {
  if (config.TALLY_STRIPE_MAX_RPS) return config.TALLY_STRIPE_MAX_RPS;
  return /^(sk|rk)_test_/.test(config.STRIPE_SECRET_KEY ?? "") ? 25 : 100;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ConfigError";
  }
}

export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const parsed = configSchema.safeParse(env);
  if (parsed.success) return parsed.data;
  throw new ConfigError(
    parsed.error.issues.map((issue) => `${issue.path.join(".") || "(environment)"}: ${issue.message}`),
  );
}
