// npm run screenshot:dashboard — the README's picture: a Tally on a fresh embedded database (or a fresh database on
// the server DATABASE_URL names) gets the README walkthrough's calls, steps 1 to 6, made in five minutes as a reader
// makes them, on a clock ending at the README's time; then the bundled Chromium opens the dashboard and saves the
// customer view of acme to docs/img/dashboard.png and the operator view to docs/img/dashboard-overview.png.
// SCREENSHOT_NOW moves the clock (default 2026-11-30T09:45:00Z, the day of the README's outputs).
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import type { Page } from "puppeteer-core";
import { benchDatabase } from "../bench/harness.js";
import { ManualClock } from "../src/clock.js";
import { loadConfig } from "../src/config.js";
import { createLogger } from "../src/logger.js";
import { createTally } from "../src/tally.js";
import { buildDashboard, launchBrowser } from "../test/helpers/browser.js";

const KEY = `screenshot-${randomBytes(12).toString("hex")}`;
const NOW = new Date(process.env.SCREENSHOT_NOW ?? "2026-11-30T09:45:00Z");
const MONTH = NOW.toISOString().slice(0, 7);
const IMG = (name: string) => fileURLToPath(new URL(`../docs/img/${name}`, import.meta.url));
const WAIT = { timeout: 30_000 };

type Call = (method: string, path: string, body?: unknown) => Promise<void>;

/**
 * The README's walkthrough, call for call (the entitlement checks too: they are what records the block), each call
 * 15 seconds after the one before, the first five minutes before NOW.
 */
async function walkthrough(call: Call): Promise<void> {
  await call("PUT", "/v1/meters/api_calls", { name: "API calls", unit: "call", aggregation: "sum" });
  await call("PUT", "/v1/plans/pro", { name: "Pro", currency: "USD" });
  await call("POST", "/v1/plans/pro/prices", {
    meter: "api_calls",
    effective_from: `${MONTH}-01T00:00:00Z`,
    model: "graduated",
    base_fee: "29",
    tiers: [
      { up_to: "1000", unit_price: "0" },
      { up_to: null, unit_price: "0.002" },
    ],
  });
  await call("PUT", "/v1/customers/acme", { name: "Acme Inc", email: "billing@acme.test" });
  await call("PUT", "/v1/customers/acme/subscription", { plan: "pro", start: `${MONTH}-01T00:00:00Z` });
  await call("POST", "/v1/events", {
    events: [
      { id: "req-1", customer: "acme", meter: "api_calls" },
      { id: "req-2", customer: "acme", meter: "api_calls", value: "1500" },
      { id: "req-1", customer: "acme", meter: "api_calls" },
    ],
  });
  await call("PUT", "/v1/customers/acme/limits/api_calls", { soft: "1800", hard: "2000", unit: "quantity" });
  await call("GET", "/v1/entitlements/acme/api_calls");
  await call("POST", "/v1/events", { events: [{ id: "req-3", customer: "acme", meter: "api_calls", value: "600" }] });
  await call("GET", "/v1/entitlements/acme/api_calls");
  await call("PUT", "/v1/meters/llm_tokens", {
    name: "LLM tokens",
    unit: "token",
    aggregation: "sum",
    dimensions: ["model"],
  });
  await call("POST", "/v1/events", {
    events: [
      { id: "chat-1", customer: "acme", meter: "llm_tokens", value: "1200", properties: { model: "gpt-4o" } },
      { id: "chat-2", customer: "acme", meter: "llm_tokens", value: "300", properties: { model: "mini" } },
    ],
  });
  await call("POST", "/v1/customers/acme/credit-grants", {
    amount: "5",
    effective_at: `${MONTH}-01T00:00:00Z`,
    description: "Welcome pack",
  });
}

async function shoot(page: Page, base: string): Promise<void> {
  await page.goto(`${base}/dashboard`);
  await page.waitForSelector("#api-key", WAIT);
  await page.type("#api-key", KEY);
  await page.click(".sign-in button[type=submit]");
  await page.waitForSelector('main[data-complete="true"] tr[data-customer="acme"]', WAIT);
  await page.screenshot({ path: IMG("dashboard-overview.png"), fullPage: true });
  await page.goto(`${base}/dashboard#/customers/acme`);
  await page.waitForSelector('main[data-complete="true"] .chart[data-meter="api_calls"][data-draws="1"]', WAIT);
  await page.screenshot({ path: IMG("dashboard.png"), clip: { x: 0, y: 0, width: 1200, height: 1100 } });
}

async function main(): Promise<void> {
  const { env: where, cleanup } = await benchDatabase("tally-screenshot-");
  const clock = new ManualClock(NOW);
  const config = loadConfig({ TALLY_ADMIN_KEY: KEY, TALLY_JOBS: "off", LOG_LEVEL: "warn", ...where });
  const [webDirectory, browser] = await Promise.all([buildDashboard(), launchBrowser()]);
  const tally = await createTally({ config, clock, logger: createLogger("warn"), webDirectory });
  try {
    const base = await tally.listen(0, "127.0.0.1");
    clock.set(new Date(NOW.getTime() - 5 * 60_000));
    const call: Call = async (method, path, body) => {
      clock.advance(15_000);
      const res = await fetch(`${base}${path}`, {
        method,
        headers: { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      // The walkthrough's second entitlement check answers 429: that is the block it shows.
      if (res.status >= 300 && res.status !== 429)
        throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
    };
    await walkthrough(call);
    clock.set(NOW);
    const page = await browser.newPage();
    await page.setViewport({ width: 1200, height: 1100 });
    await shoot(page, base);
    console.log(`wrote ${IMG("dashboard.png")} and ${IMG("dashboard-overview.png")} (as of ${NOW.toISOString()})`);
  } finally {
    await browser.close();
    await tally.shutdown();
    await cleanup();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
