// The one Stripe client Tally makes from its configuration, and what a failed request means for whoever retries it.
import Stripe from "stripe";
import type { Config } from "../config.js";

/** The SDK's host/port/protocol options from a base URL. */
export function addressOf(apiBase: string): { host: string; port: number; protocol: "http" | "https" } {
  const url = new URL(apiBase);
  const protocol = url.protocol === "http:" ? "http" : "https";
  return { host: url.hostname, port: url.port ? Number(url.port) : protocol === "http" ? 80 : 443, protocol };
}

/**
 * The SDK against STRIPE_API_BASE (Stripe's own by default), or undefined without STRIPE_SECRET_KEY (the sync is
 * off). Tally owns retries (maxNetworkRetries 0): they follow its ledger, not the SDK's timing.
 */
export function createStripeClient(
  config: Pick<Config, "STRIPE_SECRET_KEY" | "STRIPE_API_BASE" | "TALLY_STRIPE_TIMEOUT_MS">,
): Stripe | undefined {
  if (!config.STRIPE_SECRET_KEY) return undefined;
  return new Stripe(config.STRIPE_SECRET_KEY, {
    maxNetworkRetries: 0,
    timeout: config.TALLY_STRIPE_TIMEOUT_MS,
    telemetry: false,
    appInfo: { name: "tally" },
    ...(config.STRIPE_API_BASE ? addressOf(config.STRIPE_API_BASE) : {}),
  });
}

/** A request Stripe did not carry out, by what the caller does next. */
export type StripeFailure =
  | { kind: "rate_limited"; message: string }
  /** 5xx, 409, timeouts, connection errors: not known to have been carried out; resend the same request later. */
  | { kind: "retry_later"; message: string }
  /** The key was refused: nothing is wrong with the request, everything waits for a working key. */
  | { kind: "auth_failed"; message: string }
  /** Any other 4xx: Stripe's answer about this request, recorded where it came from. */
  | { kind: "rejected"; status: number; code: string; message: string };

export interface SdkError {
  statusCode?: number;
  type?: string;
  rawType?: string;
  code?: string;
  message?: string;
  headers?: Record<string, string>;
}

export const messageOf = (err: unknown): string => (err as SdkError | null)?.message || String(err);

/** Maps an SDK error to what the caller does about it (the answers every endpoint shares). */
export function classifyFailure(err: unknown): StripeFailure {
  const e = (err ?? {}) as SdkError;
  const message = messageOf(err);
  const status = e.statusCode;
  if (status === undefined) return { kind: "retry_later", message };
  if (status === 429) return { kind: "rate_limited", message };
  if (status === 401 || status === 403) return { kind: "auth_failed", message };
  // Stripe says when retrying makes sense (lock timeouts, a 409 for a request with the same idempotency key still
  // in flight, ...).
  if (status >= 500 || status === 409 || e.headers?.["stripe-should-retry"] === "true") {
    return { kind: "retry_later", message: `${status}: ${message}` };
  }
  return { kind: "rejected", status, code: e.code ?? e.rawType ?? "stripe_error", message };
}
