// npm run examples:pricing — one worked example per price model, computed by Tally itself over HTTP on an
// embedded database, printed as the README shows them (request and the invoice preview Tally answered).
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ManualClock } from "../src/clock.js";
import { loadConfig } from "../src/config.js";
import { createLogger } from "../src/logger.js";
import { createTally } from "../src/tally.js";

const KEY = `examples-${randomBytes(12).toString("hex")}`;
const NOW = "2026-11-20T12:00:00Z";

const examples = [
  {
    title: "graduated with a base fee (PRODUCT.md's worked example)",
    price: {
      model: "graduated",
      tiers: [
        { up_to: "10000", unit_price: "0", flat_price: "0" },
        { up_to: "100000", unit_price: "0.001" },
        { up_to: null, unit_price: "0.0005" },
      ],
      base_fee: "99",
    },
    usage: ["100000", "150000"],
  },
  { title: "per_unit", price: { model: "per_unit", unit_price: "0.000125" }, usage: ["1200000", "34567"] },
  {
    title: "volume (the tier holding the total prices every unit)",
    price: {
      model: "volume",
      tiers: [
        { up_to: "100000", unit_price: "0.002", flat_price: "0" },
        { up_to: "1000000", unit_price: "0.0015", flat_price: "20" },
        { up_to: null, unit_price: "0.001", flat_price: "50" },
      ],
    },
    usage: ["150000", "100000"],
  },
  {
    title: "package (whole packages, rounded up)",
    price: { model: "package", package_size: "1000", package_price: "2.50" },
    usage: ["2500", "1"],
  },
];

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "tally-examples-"));
  const config = loadConfig({ TALLY_ADMIN_KEY: KEY, TALLY_JOBS: "off", LOG_LEVEL: "silent", TALLY_DATA_DIR: dir });
  const tally = await createTally({ config, clock: new ManualClock(NOW), logger: createLogger("silent") });
  const base = await tally.listen(0, "127.0.0.1");
  const call = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    // biome-ignore lint/suspicious/noExplicitAny: printed as it came
    const json: any = await res.json();
    if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
    return json;
  };
  try {
    await call("PUT", "/v1/meters/api_calls", { name: "API calls", unit: "calls", aggregation: "sum" });
    for (const [i, ex] of examples.entries()) {
      const plan = `example-${i + 1}`;
      const customer = `customer-${i + 1}`;
      await call("PUT", `/v1/plans/${plan}`, { name: ex.title, currency: "USD" });
      const price = { meter: "api_calls", effective_from: "2026-11-01T00:00:00Z", ...ex.price };
      await call("POST", `/v1/plans/${plan}/prices`, price);
      await call("PUT", `/v1/customers/${customer}`, {});
      await call("PUT", `/v1/customers/${customer}/subscription`, { plan, start: "2026-11-01T00:00:00Z" });
      await call("POST", "/v1/events", {
        events: ex.usage.map((value, j) => ({
          id: `u${j}`,
          customer,
          meter: "api_calls",
          value,
          timestamp: `2026-11-1${j}T09:00:00Z`,
        })),
      });
      const invoice = await call("GET", `/v1/customers/${customer}/invoice?period=2026-11`);
      const summary = await call("GET", `/v1/customers/${customer}/summary?period=2026-11`);
      const total = ex.usage.reduce((a, b) => a + Number(b), 0);
      console.log(`#### ${ex.title}\n`);
      console.log("```sh");
      console.log(
        `curl -X POST $TALLY/v1/plans/${plan}/prices -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \\`,
      );
      console.log(`  -d '${JSON.stringify(price)}'`);
      console.log(`# ${customer} sends ${total.toLocaleString("en-US")} calls in November, then:`);
      console.log(`curl "$TALLY/v1/customers/${customer}/invoice?period=2026-11" -H "Authorization: Bearer $KEY"`);
      console.log("```");
      console.log("```json");
      const lines = invoice.lines.map((l: Record<string, unknown>) =>
        JSON.stringify({
          description: l.description,
          quantity: l.quantity,
          amount: l.amount,
          ...(l.tier !== undefined ? { tier: l.tier } : {}),
        }),
      );
      console.log(
        `{"currency":"${invoice.currency}","lines":[\n  ${lines.join(",\n  ")}],\n "total":"${invoice.total}"}`,
      );
      console.log("```");
      const m = summary.meters[0];
      console.log(
        `Summary: quantity ${m.quantity}, amount ${m.amount}${m.tier ? `, next unit in tier ${m.tier.index}${m.tier.units_to_next_tier ? ` (${m.tier.units_to_next_tier} units to the next tier)` : ""}` : ""}.\n`,
      );
    }
  } finally {
    await tally.shutdown();
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
