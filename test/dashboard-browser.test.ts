// The dashboard in a real headless Chromium against a real Tally, on both engines: sign in with a key kept in
// sessionStorage only; the page's figures are the API's to the cent; switching granularity and grouping redraws;
// a blocked customer shows as blocked; the embed with a portal token shows its customer only and fails cleanly
// once the token has expired; it fits a phone, invoice amounts in view. Every screen shows the one forecast of
// src/forecast; figures carry their currency, counts their plural; "this period" draws only the days begun; the
// Stripe panel says sync is off when it is. Screenshots go to test-artifacts/.
import { join } from "node:path";
import type { Browser, Page } from "puppeteer-core";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ManualClock } from "../src/clock.js";
import { periodLabel } from "../web/src/format.js";
import { ARTIFACTS, buildDashboard, launchBrowser } from "./helpers/browser.js";
import { BACKENDS } from "./helpers/databases.js";
import { postJson } from "./helpers/events.js";
import { until } from "./helpers/eventually.js";
import { ADMIN_KEY, admin, startTestTally, type TestTally } from "./helpers/tally.js";

const WAIT = { timeout: 15_000 };

describe.each(BACKENDS)("dashboard in a browser on %s", (backend) => {
  let t: TestTally;
  let base: string;
  let browser: Browser;
  let page: Page;
  /** Script errors and CSP refusals the operator's tab reported: none are expected. */
  const problems: string[] = [];
  const api = () => request(t.tally.app);
  const get = async (path: string) => {
    const res = await api().get(path).set(admin);
    expect(res.status, `${path}: ${JSON.stringify(res.body)}`).toBe(200);
    return res.body;
  };
  const put = async (path: string, body: object) => {
    const res = await api().put(path).set(admin).send(body);
    expect(res.status, `${path}: ${JSON.stringify(res.body)}`).toBeLessThan(300);
  };
  const shot = (name: string) =>
    page.screenshot({ path: join(ARTIFACTS, `dashboard-${backend}-${name}.png`), fullPage: true });
  const text = (selector: string) => page.$eval(selector, (e) => (e.textContent ?? "").trim());

  beforeAll(async () => {
    const [webDirectory, b] = await Promise.all([buildDashboard(), launchBrowser()]);
    browser = b;
    t = await startTestTally(backend, { webDirectory });
    base = await t.tally.listen(0, "127.0.0.1");
    await put("/v1/meters/db_tokens", { name: "Tokens", unit: "tokens", aggregation: "sum", dimensions: ["model"] });
    await put("/v1/meters/db_calls", { name: "API calls", unit: "calls", aggregation: "sum" });
    await put("/v1/plans/db_plan", { name: "Dash plan", currency: "USD" });
    const prices = [
      { meter: "db_tokens", effective_from: "2026-01-01T00:00:00Z", model: "per_unit", unit_price: "0.000125" },
      {
        meter: "db_calls",
        effective_from: "2026-01-01T00:00:00Z",
        model: "graduated",
        tiers: [
          { up_to: "100", unit_price: "0.01" },
          { up_to: null, unit_price: "0.007" },
        ],
      },
    ];
    for (const p of prices) expect((await api().post("/v1/plans/db_plan/prices").set(admin).send(p)).status).toBe(201);
    for (const c of ["db_acme", "db_blocked", "db_quiet", "db_prepaid"]) {
      await put(`/v1/customers/${c}`, { name: `${c.slice(3)} Inc.` });
      await put(`/v1/customers/${c}/subscription`, { plan: "db_plan", start: "2026-01-01T00:00:00Z" });
    }
    // Alone in its currency: its card must read "1 customer".
    await put("/v1/plans/db_euro", { name: "Euro plan", currency: "EUR" });
    await put("/v1/customers/db_euro", { name: "euro GmbH" });
    await put("/v1/customers/db_euro/subscription", { plan: "db_euro", start: "2026-01-01T00:00:00Z" });
    await put("/v1/customers/db_blocked/limits/db_calls", { soft: "5", hard: "10", unit: "quantity" });
    // A credit_only customer whose 0.50 of credits are spent: credits exhausted.
    await put("/v1/customers/db_prepaid", { credit_mode: "credit_only" });
    // From 30 days ago: within the event window a grant may reach back to, and before every event below.
    const since = new Date(t.clock.now().getTime() - 30 * 86_400_000).toISOString();
    const grant = { amount: "0.50", description: "Welcome credits", effective_at: since };
    expect((await api().post("/v1/customers/db_prepaid/credit-grants").set(admin).send(grant)).status).toBe(201);
    const now = t.clock.now().getTime();
    const at = (minutesAgo: number) => new Date(now - minutesAgo * 60_000).toISOString();
    const events = [
      ...[1, 2, 3].map((i) => ({
        id: `a${i}`,
        customer: "db_acme",
        meter: "db_tokens",
        value: 1000 * i + 7,
        timestamp: at(i * 70),
        properties: { model: i === 2 ? "small" : "large" },
      })),
      { id: "a4", customer: "db_acme", meter: "db_calls", value: 123, timestamp: at(5) },
      { id: "b1", customer: "db_blocked", meter: "db_calls", value: 12, timestamp: at(3) },
      {
        id: "q1",
        customer: "db_quiet",
        meter: "db_tokens",
        value: 3,
        timestamp: at(2),
        properties: { model: "small" },
      },
      { id: "p1", customer: "db_prepaid", meter: "db_calls", value: 80, timestamp: at(4) },
    ];
    expect((await postJson(t.tally, events)).body).toEqual({ accepted: events.length, duplicates: 0 });
    await until(
      () => api().get("/v1/entitlements/db_prepaid/db_calls").set(admin),
      (r) => r.status === 429 && r.body.code === "credits_exhausted" && r.body.credits === "0.00",
      { timeout: 10_000 },
    );
    page = await browser.newPage();
    page.on("pageerror", (e) => problems.push(`pageerror: ${(e as Error).message}`));
    page.on("console", (m) => {
      if (m.type() === "error") problems.push(`console: ${m.text()}`);
    });
  });
  afterAll(async () => {
    await browser?.close();
    await t?.close();
  });

  it("when the operator signs in, then the key lives in sessionStorage only and the ranking shows the API's spend", async () => {
    await page.goto(`${base}/dashboard`);
    await page.waitForSelector("#api-key", WAIT);
    await page.type("#api-key", ADMIN_KEY);
    await page.click(".sign-in button[type=submit]");
    await page.waitForSelector('main[data-ready="true"] tr[data-customer="db_acme"]', WAIT);
    expect(await page.evaluate(`sessionStorage.getItem("tally.key")`)).toBe(ADMIN_KEY);
    expect(await page.evaluate("document.cookie")).toBe("");
    expect(await page.evaluate("localStorage.length")).toBe(0);
    expect(page.url()).not.toContain(ADMIN_KEY);
    const overview = await get("/v1/dashboard/customers");
    for (const id of ["db_acme", "db_blocked", "db_quiet", "db_prepaid"]) {
      const summary = await get(`/v1/customers/${id}/summary`);
      const row = overview.customers.find((c: { id: string }) => c.id === id);
      expect(row.spend).toBe(summary.total);
      expect(await text(`tr[data-customer="${id}"] td[data-field="spend"]`)).toBe(`${summary.total} USD`);
    }
    expect(await page.$eval('tr[data-customer="db_blocked"] .badge', (e) => e.getAttribute("data-state"))).toBe(
      "blocked",
    );
    await page.waitForSelector('main[data-complete="true"]', WAIT);
    expect(await text("#plans-panel")).toContain("db_plan");
    await shot("operator");
  });

  it("when the ranking is read, then every figure carries its currency, each forecast is the customer's own forecast, and counts agree with their noun", async () => {
    const overview = await get("/v1/dashboard/customers");
    expect(overview.method).toBe("customer_forecast");
    for (const c of overview.customers) {
      const f = await get(`/v1/customers/${c.id}/forecast`);
      expect(c.forecast).toBe(f.forecast_total);
      expect(c.forecast_method).toBe(f.method);
      const cell = (field: string) => text(`tr[data-customer="${c.id}"] td[data-field="${field}"]`);
      expect(await cell("forecast")).toBe(`${f.forecast_total} ${c.currency}`);
      expect(await cell("previous_spend")).toBe(`${c.previous_spend} ${c.currency}`);
      expect(await cell("growth")).toMatch(new RegExp(` ${c.currency} \\((new|[-+]?\\d+\\.\\d%)\\)$`));
      expect(await cell("run_rate_per_day")).toBe(`${c.run_rate_per_day} ${c.currency} / day`);
    }
    const labels = await page.$$eval('[data-testid="total-label"]', (els) => els.map((e) => e.textContent));
    expect(labels).toEqual(expect.arrayContaining(["1 customer · EUR", "4 customers · USD"]));
    expect(await text('[data-testid="as-of"]')).not.toContain("linear");
  });

  it("when Stripe sync is off, then the reconciliation panel says so and lists no rows as out of sync", async () => {
    const overview = await get("/v1/dashboard/customers");
    expect(overview.stripe_sync).toBe(false);
    expect(await text('#recon-panel [data-testid="stripe-off"]')).toContain("Stripe sync is off");
    expect(await page.$("#recon-panel table")).toBeNull();
    expect(await text("#recon-panel")).not.toContain("not in sync");
  });

  it("when ranked by growth, then the list redraws in that order", async () => {
    await page.click('button[data-rank="growth"]');
    await page.waitForSelector('#customer-list[data-ranking="growth"]', WAIT);
    const ids = await page.$$eval("#customer-list tr[data-customer]", (rows) =>
      rows.map((r) => r.getAttribute("data-customer")),
    );
    const overview = await get("/v1/dashboard/customers");
    const expected = [...overview.customers]
      .sort((a: { growth: string }, b: { growth: string }) => Number(b.growth) - Number(a.growth))
      .map((c: { id: string }) => c.id);
    expect(ids).toEqual(expected.filter((id: string) => ids.includes(id)));
  });

  it("when a customer is opened, then every figure equals the API's to the cent", async () => {
    await page.goto(`${base}/dashboard#/customers/db_acme`);
    await page.waitForSelector('main[data-complete="true"] [data-testid="summary-total"]', WAIT);
    const summary = await get("/v1/customers/db_acme/summary");
    expect(await text('[data-testid="summary-total"]')).toBe(`${summary.total} USD`);
    for (const m of summary.meters) {
      expect(await text(`[data-meter-amount="${m.meter}"]`)).toBe(`${m.amount} USD`);
      expect(await text(`[data-meter-quantity="${m.meter}"]`)).toMatch(new RegExp(`^${m.quantity} `));
    }
    const calls = summary.meters.find((m: { meter: string }) => m.meter === "db_calls");
    expect(await text('article[data-meter="db_calls"] .tier')).toContain(`Tier ${calls.tier.index}`);
    const forecast = await get("/v1/customers/db_acme/forecast");
    expect(await text('[data-testid="forecast-total"]')).toBe(`${forecast.forecast_total} USD`);
    // The same forecast as the ranking's, at the same instant.
    const ranked = (await get("/v1/dashboard/customers")).customers.find((c: { id: string }) => c.id === "db_acme");
    expect(await text('[data-testid="forecast-total"]')).toBe(`${ranked.forecast} USD`);
    expect(await text('[data-testid="forecast-method"]')).toContain("run rate");
    const drafts = await get("/v1/invoices?customer=db_acme&status=draft");
    expect(await text('[data-testid="draft-total"]')).toBe(`${drafts.data[0].total} USD`);
    const credits = await api().get("/v1/customers/db_acme/credits").set(admin);
    if (credits.status === 404 || credits.body.grants.length === 0) {
      expect(await text("#credits")).toContain("No prepaid credits");
    } else expect(await text('[data-testid="credits-balance"]')).toContain(credits.body.balance);
    expect(await text('[data-testid="as-of"]')).toContain(summary.as_of.slice(0, 10));
    await shot("customer");
  });

  it("when the granularity or grouping changes, then the chart redraws with the API's rows", async () => {
    const chart = '.chart[data-meter="db_tokens"]';
    await page.waitForSelector(`${chart}[data-draws="1"][data-granularity="day"]`, WAIT);
    // This period: the days begun so far, not the ones still to come as zero bars.
    const now = t.clock.now();
    const daysBegun = now.getUTCDate();
    expect(await page.$eval(chart, (e) => e.getAttribute("data-buckets"))).toBe(String(daysBegun));
    const lastDay = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 0)).getUTCDate();
    if (daysBegun < lastDay)
      expect(await text(`${chart} [role=status]`)).toContain("days still to come are left empty");
    await page.click(`${chart} button[data-granularity="hour"]`);
    await page.waitForSelector(`${chart}[data-draws="2"][data-granularity="hour"]`, WAIT);
    expect(await page.$eval(`${chart} button[data-granularity="hour"]`, (b) => b.getAttribute("aria-pressed"))).toBe(
      "true",
    );
    await page.select(`${chart} select`, "model");
    await page.waitForSelector(`${chart}[data-draws="3"][data-group-by="model"]`, WAIT);
    expect(await page.$eval(chart, (e) => e.getAttribute("data-series"))).toBe("2");
    const rows = Number(await page.$eval(chart, (e) => e.getAttribute("data-rows")));
    const from = new Date(Math.floor(t.clock.now().getTime() / 3_600_000) * 3_600_000 - 47 * 3_600_000).toISOString();
    const to = new Date(Math.floor(t.clock.now().getTime() / 3_600_000) * 3_600_000 + 3_600_000).toISOString();
    const usage = await get(
      `/v1/usage?customer=db_acme&meter=db_tokens&granularity=hour&from=${from}&to=${to}&group_by=model`,
    );
    expect(rows).toBe(usage.data.length);
    await page.click(`${chart} button[data-granularity="month"]`);
    await page.waitForSelector(`${chart}[data-draws="4"][data-granularity="month"]`, WAIT);
  });

  it("when the CSV is downloaded, then it is the API's export, saved from a Blob (the key in no URL)", async () => {
    // Catch the Blob the page makes and the download link it clicks (CSP's connect-src keeps fetch off blob: URLs).
    await page.evaluate(`(() => {
      window.__downloads = [];
      window.__blobs = [];
      const make = URL.createObjectURL;
      URL.createObjectURL = (b) => { window.__blobs.push(b); return make(b); };
      const click = HTMLAnchorElement.prototype.click;
      HTMLAnchorElement.prototype.click = function () {
        if (this.download) window.__downloads.push({ href: this.href, name: this.download });
        else click.call(this);
      };
    })()`);
    const buttons = await page.$$("main button.secondary");
    const csvButton = buttons[buttons.length - 1];
    expect(await csvButton?.evaluate((b) => b.textContent)).toContain("CSV");
    await csvButton?.click();
    await page.waitForFunction("window.__downloads.length === 1", WAIT);
    const got = (await page.evaluate(
      `(async () => ({ ...window.__downloads[0], text: await window.__blobs[0].text() }))()`,
    )) as { href: string; name: string; text: string };
    expect(got.href).toMatch(/^blob:/);
    expect(got.href).not.toContain(ADMIN_KEY);
    expect(got.name).toMatch(/^usage-db_acme-\d{4}-\d{2}\.csv$/);
    const summary = await get("/v1/customers/db_acme/summary");
    const csv = await api()
      .get("/v1/usage/export")
      .query({ customer: "db_acme", granularity: "day", from: summary.period.start, to: summary.period.end })
      .set(admin);
    expect(csv.status).toBe(200);
    expect(got.text).toBe(csv.text);
    expect(got.text.split("\n")[0]).toBe("start,end,customer,meter,value,count");
  });

  it("when a blocked customer is opened, then it shows as blocked", async () => {
    await page.goto(`${base}/dashboard#/customers/db_blocked`);
    await page.waitForSelector('main[data-complete="true"] [data-testid="customer-state"] .badge', WAIT);
    expect(await page.$eval('[data-testid="customer-state"] .badge', (e) => e.getAttribute("data-state"))).toBe(
      "blocked",
    );
    expect(await page.$eval('article[data-meter="db_calls"] .limit', (e) => e.className)).toContain("blocked");
    await shot("blocked");
  });

  it("when a credit_only customer spent its credits, then it shows as exhausted, with the credit lines", async () => {
    await page.goto(`${base}/dashboard#/customers/db_prepaid`);
    await page.waitForSelector('main[data-complete="true"] [data-testid="customer-state"] .badge', WAIT);
    expect(await page.$eval('[data-testid="customer-state"] .badge', (e) => e.getAttribute("data-state"))).toBe(
      "credits_exhausted",
    );
    const credits = await get("/v1/customers/db_prepaid/credits");
    expect(await text('[data-testid="credits-balance"]')).toBe(`${credits.balance} ${credits.currency}`);
    const summary = await get("/v1/customers/db_prepaid/summary");
    expect(await text('[data-testid="summary-total"]')).toBe(`${summary.total} USD`);
    const draft = (await get("/v1/invoices?customer=db_prepaid&status=draft")).data[0];
    expect(await text('[data-testid="draft-total"]')).toBe(`${draft.total} USD`);
    expect(await text('[data-testid="draft-credits"]')).toBe(draft.credits);
    expect(await text("#draft")).toContain("Welcome credits");
    // The meter's amount is before credits and the spend after: the card says what lies between.
    expect(summary.credits).toBeDefined();
    expect(await text('[data-testid="spend-credits"]')).toBe(
      `after ${summary.credits} USD of credits · ${summary.subtotal} USD before credits`,
    );
    expect(await text('article[data-meter="db_calls"] .figures-line')).toContain("before credits");
    await shot("credits");
  });

  it("when a read key bound to one customer signs in, then it lands on that customer and sees no other", async () => {
    const res = await api()
      .post("/v1/api-keys")
      .set(admin)
      .send({ scopes: ["read"], customer: "db_acme" });
    expect(res.status).toBe(201);
    const bound = await browser.newPage();
    try {
      await bound.goto(`${base}/dashboard`);
      await bound.waitForSelector("#api-key", WAIT);
      await bound.type("#api-key", res.body.key);
      await bound.click(".sign-in button[type=submit]");
      await bound.waitForSelector('main[data-complete="true"] [data-testid="summary-total"]', WAIT);
      expect(bound.url()).toMatch(/#\/customers\/db_acme$/);
      await bound.goto(`${base}/dashboard#/customers/db_blocked`);
      await bound.waitForSelector('main[data-error="not_found"]', WAIT);
      expect(await bound.$("[data-testid=summary-total]")).toBeNull();
    } finally {
      await bound.close();
    }
  });

  it("when the embed is opened with a portal token, then only its customer shows, at phone width too", async () => {
    const minted = await api().post("/v1/customers/db_acme/portal-tokens").set(admin).send({ ttl_seconds: 600 });
    expect(minted.status).toBe(201);
    const embed = await browser.newPage();
    try {
      await embed.setViewport({ width: 375, height: 800 });
      await embed.goto(`${base}/embed/customer?token=${encodeURIComponent(minted.body.token)}`);
      await embed.waitForSelector('main[data-complete="true"] [data-testid="summary-total"]', WAIT);
      expect(embed.url()).not.toContain("token=");
      const summary = await get("/v1/customers/db_acme/summary");
      expect(await embed.$eval('[data-testid="summary-total"]', (e) => e.textContent)).toBe(`${summary.total} USD`);
      const body = await embed.$eval("main", (e) => e.textContent ?? "");
      expect(body).toContain("acme Inc.");
      expect(body).not.toContain("db_blocked");
      expect(await embed.$eval(".top", (e) => e.ownerDocument.defaultView?.getComputedStyle(e).display)).toBe("none");
      // Nothing wider than the phone: tables scroll inside their own box.
      expect(await embed.evaluate("document.documentElement.scrollWidth")).toBeLessThanOrEqual(375);
      // The invoice fits without scrolling: every amount in view.
      await embed.waitForSelector('#draft [data-testid="draft-total"]', WAIT);
      const invoice = await embed.$$eval(".invoice .scroll", (boxes) =>
        boxes.map((b) => ({ scroll: b.scrollWidth, width: b.clientWidth })),
      );
      expect(invoice.length).toBeGreaterThan(0);
      for (const box of invoice) expect(box.scroll).toBeLessThanOrEqual(box.width);
      const rights = await embed.$$eval('.invoice td[data-field="amount"]', (cells) =>
        cells.map((c) => c.getBoundingClientRect().right),
      );
      expect(rights.length).toBeGreaterThan(0);
      for (const right of rights) expect(right).toBeLessThanOrEqual(375);
      await embed.screenshot({ path: join(ARTIFACTS, `dashboard-${backend}-embed-phone.png`), fullPage: true });
    } finally {
      await embed.close();
    }
  });

  it("when the embed's token has expired, then it says so and shows no data", async () => {
    const minted = await api().post("/v1/customers/db_acme/portal-tokens").set(admin).send({ ttl_seconds: 60 });
    const clock = t.clock as ManualClock;
    const started = clock.now();
    clock.advance(61_000);
    const embed = await browser.newPage();
    try {
      await embed.goto(`${base}/embed/customer?token=${encodeURIComponent(minted.body.token)}`);
      await embed.waitForSelector('main[data-error="token_expired"]', WAIT);
      expect(await embed.$eval("main [role=alert]", (e) => e.textContent)).toContain("expired");
      expect(await embed.$("[data-testid=summary-total]")).toBeNull();
      await embed.screenshot({ path: join(ARTIFACTS, `dashboard-${backend}-embed-expired.png`) });
    } finally {
      clock.set(started);
      await embed.close();
    }
  });

  it("when a customer on a billing cycle of its own is opened, then the view labels its own period", async () => {
    // Anchored three days ago at the hour: its period runs from then to the same day and hour next month.
    const anchor = new Date(Math.floor(t.clock.now().getTime() / 3_600_000) * 3_600_000 - 3 * 86_400_000);
    await put("/v1/customers/db_anchored", { name: "anchored Ltd." });
    await put("/v1/customers/db_anchored/subscription", {
      plan: "db_plan",
      start: anchor.toISOString(),
      billing: { interval: "month", anchor: anchor.toISOString() },
    });
    const { period } = await get("/v1/dashboard/customers/db_anchored");
    expect(Date.parse(period.start)).toBe(anchor.getTime());
    await page.goto(`${base}/dashboard#/customers/db_anchored`);
    await page.waitForSelector('main[data-ready="true"] [data-testid="period"]', WAIT);
    const label = await text('[data-testid="period"]');
    expect(label).toBe(periodLabel(period, "UTC"));
    expect(label.startsWith(`${anchor.getUTCDate()} `)).toBe(true);
  });

  it("when every view has been used, then the operator's tab reported no script error and no CSP refusal", () => {
    expect(problems).toEqual([]);
  });
});
