// The dashboard's types are the API's: web/src/api-types.ts must be exactly what scripts/openapi-types.ts makes of
// the OpenAPI document Tally serves now. A schema changed without `npm run types:api` fails here, and a page reading
// a field the API no longer has fails `npx tsc -p web/tsconfig.json`.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { apiTypesSource, servedOpenApiDocument, WEB_API_TYPES } from "../scripts/openapi-types.js";

describe("web API types", () => {
  it("when the served OpenAPI document is turned into types, then they equal the committed web/src/api-types.ts", async () => {
    const committed = readFileSync(WEB_API_TYPES, "utf8");
    expect(committed === (await apiTypesSource()), "web/src/api-types.ts is stale: run `npm run types:api`").toBe(true);
  });

  it("when the overview is described, then it carries what the pages read (credits, forecast_method, stripe_sync)", async () => {
    const doc = (await servedOpenApiDocument()) as {
      components: { schemas: Record<string, { properties: Record<string, { items?: { properties: object } }> }> };
    };
    const overview = doc.components.schemas.DashboardOverview;
    expect(Object.keys(overview?.properties ?? {})).toEqual(expect.arrayContaining(["stripe_sync", "method"]));
    expect(Object.keys(overview?.properties.customers?.items?.properties ?? {})).toEqual(
      expect.arrayContaining(["credits", "forecast", "forecast_method", "run_rate_per_day"]),
    );
  });
});
