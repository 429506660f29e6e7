// @tally/client: send usage to Tally (batched, retried, exactly once) and read it back, typed from Tally's OpenAPI
// document. The usageLimit middleware is at "@tally/client/middleware" (it needs Express's types).
export { TallyClient, type TallyClientOptions, type UsageEvent } from "./client.js";
export {
  BufferFullError,
  ClientClosedError,
  DeliveryError,
  type EventProblem,
  type Problem,
  type Rejection,
  TallyApiError,
  type TrackedEvent,
} from "./errors.js";
export type { components, paths } from "./generated/openapi.js";
export type { ClientMetrics } from "./outbox.js";
export type {
  Blocked,
  Credits,
  CustomerSummary,
  Entitlement,
  EventReceipt,
  Invoice,
  InvoicePreview,
  InvoiceQuery,
  UsageQuery,
  UsageSeries,
} from "./reads.js";
export { uuid7 } from "./uuid7.js";
