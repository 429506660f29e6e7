// The dashboard reads the API's own types (clients/typescript/src/generated/openapi.ts, drift-checked in
// clients-typescript.test.ts): the document they come from carries what the pages read.
import { describe, expect, it } from "vitest";
import { openapiDocument } from "../src/http/app.js";

describe("web API types", () => {
  it("when the overview is described, then it carries what the pages read (credits, forecast_method, stripe_sync)", () => {
    const doc = openapiDocument() as unknown as {
      components: { schemas: Record<string, { properties: Record<string, { items?: { properties: object } }> }> };
    };
    const overview = doc.components.schemas.DashboardOverview;
    expect(Object.keys(overview?.properties ?? {})).toEqual(expect.arrayContaining(["stripe_sync", "method"]));
    expect(Object.keys(overview?.properties.customers?.items?.properties ?? {})).toEqual(
      expect.arrayContaining(["credits", "forecast", "forecast_method", "run_rate_per_day"]),
    );
  });
});
