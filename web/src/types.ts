// The shapes of the API answers the pages read, named for the pages: every one is taken from the types that
// scripts/openapi.ts generates from the OpenAPI document Tally serves (the route table's zod schemas), so a
// field the API changes is a type error here (npx tsc -p web/tsconfig.json) rather than a page that quietly drifts.
import type { components, paths } from "../../clients/typescript/src/generated/openapi.js";

type Schemas = components["schemas"];
/** The JSON body of a GET's 200 answer. */
type Answer<P extends keyof paths> = paths[P] extends {
  get: { responses: { 200: { content: { "application/json": infer T } } } };
}
  ? T
  : never;

export type Overview = Schemas["DashboardOverview"];
export type OverviewCustomer = Overview["customers"][number];
export type State = OverviewCustomer["state"];

export type CustomerInfo = Schemas["DashboardCustomer"];
export type ViewMeter = CustomerInfo["meters"][number];

export type Summary = Schemas["CustomerSummary"];
export type SummaryMeter = Summary["meters"][number];

export type Invoice = Schemas["Invoice"];
export type InvoiceList = Answer<"/v1/invoices">;
export type Forecast = Schemas["Forecast"];
export type ForecastMethod = Forecast["method"];
export type Credits = Schemas["Credits"];
export type UsageRow = Answer<"/v1/usage">["data"][number];

export type Meters = Answer<"/v1/meters">;
export type Plans = Answer<"/v1/plans">;
export type Plan = Schemas["Plan"];
export type Reconciliation = Answer<"/v1/stripe/reconciliation">;
export type ReconciliationRow = Schemas["ReconciliationRow"];
export type Alerts = Answer<"/v1/alerts">;
export type Alert = Schemas["Alert"];
