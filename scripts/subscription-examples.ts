// npm run examples:subscriptions — issue #25's worked example (November 2026, 720 hours) run by Tally itself over
// HTTP on an embedded database with its clock at 2026-11-20T12:00Z: each request and the parts of the answers that
// docs/subscriptions.md shows.
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

type Json = Record<string, unknown>;

/** An invoice's lines, one per row, with the fields the doc shows. */
function showLines(invoice: Json): string {
  const lines = (invoice.lines as Json[]).map((l) =>
    JSON.stringify(
      Object.fromEntries(
        Object.entries(l).filter(([k]) =>
          ["kind", "plan", "charge", "description", "quantity", "amount", "proration", "trial"].includes(k),
        ),
      ),
    ),
  );
  return `{"lines":[\n  ${lines.join(",\n  ")}],\n "total":"${invoice.total}"}`;
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "tally-examples-"));
  const config = loadConfig({ TALLY_ADMIN_KEY: KEY, TALLY_JOBS: "off", LOG_LEVEL: "silent", TALLY_DATA_DIR: dir });
  const tally = await createTally({ config, clock: new ManualClock(NOW), logger: createLogger("silent") });
  const base = await tally.listen(0, "127.0.0.1");
  const call = async (method: string, path: string, body?: unknown, show = false): Promise<Json> => {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (show) {
      console.log(`tally -X ${method} $TALLY${path}${body === undefined ? "" : ` -d '${JSON.stringify(body)}'`}`);
      console.log(`# → ${res.status} ${text}`);
    }
    if (res.status >= 300 && res.status !== 404) throw new Error(`${method} ${path}: ${res.status} ${text}`);
    return text ? (JSON.parse(text) as Json) : {};
  };
  const invoice = async (customer: string, period = "2026-11") => {
    console.log(`tally "$TALLY/v1/customers/${customer}/invoice?period=${period}"`);
    console.log(showLines(await call("GET", `/v1/customers/${customer}/invoice?period=${period}`)));
  };
  try {
    await call("PUT", "/v1/meters/calls", { name: "Calls", unit: "call", aggregation: "sum" });
    for (const [plan, fee] of [
      ["starter", "30"],
      ["pro", "90"],
    ]) {
      await call("PUT", `/v1/plans/${plan}`, { name: plan, currency: "USD" });
      const price = { meter: "calls", effective_from: "2026-01-01T00:00:00Z", model: "per_unit", unit_price: "0.01" };
      await call("POST", `/v1/plans/${plan}/prices`, { ...price, base_fee: fee });
      const seats = { key: "seats", name: "Seats", unit_price: "12", effective_from: "2026-01-01T00:00:00Z" };
      await call("POST", `/v1/plans/${plan}/fixed-charges`, seats, plan === "starter");
    }
    console.log("\n## upgrade");
    await call("PUT", "/v1/customers/up", {});
    await call("PUT", "/v1/customers/up/subscription", { plan: "starter", start: "2026-11-01T00:00:00Z" }, true);
    await call("PUT", "/v1/customers/up/subscription", { plan: "pro", start: "2026-11-11T00:00:00Z" }, true);
    await invoice("up");
    console.log("\n## upgrade without proration");
    await call("PUT", "/v1/customers/flat", {});
    await call("PUT", "/v1/customers/flat/subscription", { plan: "starter", start: "2026-11-01T00:00:00Z" });
    const none = { plan: "pro", start: "2026-11-11T00:00:00Z", proration: "none" };
    await call("PUT", "/v1/customers/flat/subscription", none, true);
    await invoice("flat");
    await invoice("flat", "2026-12");
    console.log("\n## seats");
    await call("PUT", "/v1/customers/team", {});
    const team = { plan: "starter", start: "2026-11-01T00:00:00Z", quantities: { seats: "5" } };
    await call("PUT", "/v1/customers/team/subscription", team, true);
    const eight = { quantity: "8", effective_at: "2026-11-21T00:00:00Z" };
    await call("PUT", "/v1/customers/team/subscription/quantities/seats", eight, true);
    await invoice("team");
    const summary = await call("GET", "/v1/customers/team/summary?period=2026-11");
    console.log(`summary: fixed_charges ${JSON.stringify(summary.fixed_charges)}, total ${summary.total}`);
    console.log("\n## trial");
    await call("PUT", "/v1/customers/trial", {});
    const trial = { plan: "starter", start: "2026-11-01T00:00:00Z", trial_end: "2026-11-04T00:00:00Z" };
    await call("PUT", "/v1/customers/trial/subscription", trial, true);
    await call("POST", "/v1/events", {
      events: [
        { id: "t1", customer: "trial", meter: "calls", value: "300", timestamp: "2026-11-02T09:00:00Z" },
        { id: "t2", customer: "trial", meter: "calls", value: "200", timestamp: "2026-11-05T09:00:00Z" },
      ],
    });
    await invoice("trial");
    console.log("\n## downgrade at the period end");
    await call("PUT", "/v1/customers/down", {});
    await call("PUT", "/v1/customers/down/subscription", { plan: "pro", start: "2026-11-01T00:00:00Z" });
    await call("PUT", "/v1/customers/down/subscription", { plan: "starter", at: "period_end" }, true);
    const customer = await call("GET", "/v1/customers/down");
    console.log(
      `customer: subscription ${JSON.stringify(customer.subscription)}, scheduled ${JSON.stringify(customer.scheduled)}`,
    );
    await invoice("down");
    await invoice("down", "2026-12");
    await call("DELETE", "/v1/customers/down/subscription/scheduled", undefined, true);
    await call("DELETE", "/v1/customers/down/subscription/scheduled", undefined, true);
    console.log("\n## cancel");
    await call("PUT", "/v1/customers/gone", {});
    await call("PUT", "/v1/customers/gone/subscription", { plan: "starter", start: "2026-11-01T00:00:00Z" });
    await call("POST", "/v1/customers/gone/subscription/cancel", { at: "2026-11-16T00:00:00Z" }, true);
    await invoice("gone");
  } finally {
    await tally.shutdown();
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
