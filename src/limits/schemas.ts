// Shapes of limits as they cross the HTTP edge.
import { z } from "zod";
import { decimalInput } from "../catalog/schemas.js";

const threshold = decimalInput("threshold").refine(
  (s) => /^\d{1,18}(\.\d{1,12})?$/.test(s),
  'must be a non-negative decimal string such as "1000"',
);

export const limitBody = z
  .strictObject({
    soft: threshold.nullable().optional().meta({ description: "Alert (once per period) when reached" }),
    hard: threshold.nullable().optional().meta({ description: "Alert and block (429) when reached" }),
    unit: z
      .enum(["quantity", "amount"])
      .meta({ description: "quantity: the meter's period quantity; amount: its priced amount" }),
    forecast: z.boolean().optional().meta({
      description:
        "Also alert (level forecast, webhook limit.forecast) when the period-end forecast crosses a threshold",
    }),
  })
  .meta({ id: "LimitInput" });
