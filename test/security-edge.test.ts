// Bad input an attacker would try, on both engines: one spelling per path (case, trailing slash), NUL and unpaired
// surrogates in any text field refused with 400 naming it, periods limited to years that are read as written, CSV
// cells that no spreadsheet reads as a formula whatever its separator, and webhook endpoints kept off private
// addresses — at registration and again at delivery.
import { once } from "node:events";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isPrivateAddress, privateTarget } from "../src/webhooks/privateNetwork.js";
import { BACKENDS } from "./helpers/databases.js";
import { defineMeters, postJson } from "./helpers/events.js";
import { until } from "./helpers/eventually.js";
import { admin, startTestTally, type TestTally } from "./helpers/tally.js";

const NOW = Date.now();
const DAY = 86_400_000;
const day = (ms: number) => new Date(Math.floor(ms / DAY) * DAY).toISOString();
const month = new Date(NOW).toISOString().slice(0, 7);
const FORMULA_START = /^[=+\-@\t\r]/;

/** Where a program splitting a CSV line on `sep` (quotes ignored, as many do) would start cells, each trimmed. */
const cellsSplitOn = (line: string, sep: string) => line.split(sep).map((c) => c.replace(/^[\s"]+/, ""));

describe("private addresses (pure)", () => {
  it.each([
    ["127.0.0.1", true],
    ["127.255.0.9", true],
    ["10.1.2.3", true],
    ["172.16.0.1", true],
    ["172.31.255.255", true],
    ["192.168.1.1", true],
    ["169.254.169.254", true],
    ["100.64.0.1", true],
    ["0.0.0.0", true],
    ["224.0.0.1", true],
    ["255.255.255.255", true],
    ["::", true],
    ["::1", true],
    ["fc00::1", true],
    ["fd12:3456::1", true],
    ["fe80::1", true],
    ["ff02::1", true],
    ["::ffff:127.0.0.1", true],
    ["::ffff:a00:1", true],
    ["64:ff9b::a00:1", true], // NAT64 of 10.0.0.1
    ["2002:c0a8:101::1", true], // 6to4 of 192.168.1.1
    ["8.8.8.8", false],
    ["172.32.0.1", false],
    ["93.184.216.34", false],
    ["2606:4700:4700::1111", false],
    ["::ffff:8.8.8.8", false],
    ["64:ff9b::808:808", false],
    ["not an ip", false],
  ])("when %s is checked, then private is %s", (ip, expected) => {
    expect(isPrivateAddress(ip)).toBe(expected);
  });

  const dns = (table: Record<string, string[]>) => async (host: string) => {
    const addresses = table[host];
    if (!addresses) throw Object.assign(new Error("not found"), { code: "ENOTFOUND" });
    return addresses.map((address) => ({ address }));
  };
  const resolve = dns({
    "hooks.example.com": ["93.184.216.34", "2606:2800:220:1::1"],
    "rebound.example.com": ["93.184.216.34", "10.0.0.7"],
    "meta.example.com": ["169.254.169.254"],
  });

  it.each([
    ["http://hooks.example.com/x", "allow", undefined],
    ["http://rebound.example.com/x", "allow", "rebound.example.com resolves to 10.0.0.7"],
    ["http://meta.example.com/latest", "allow", "meta.example.com resolves to 169.254.169.254"],
    ["http://nowhere.example.com/x", "allow", undefined],
    ["http://nowhere.example.com/x", "refuse", "nowhere.example.com did not resolve (ENOTFOUND)"],
    ["http://localhost:9/x", "allow", "localhost is this machine"],
    ["http://LOCALHOST./x", "allow", "localhost is this machine"],
    ["http://app.localhost/x", "allow", "app.localhost is this machine"],
    ["http://[::1]:9/x", "allow", "::1 is not a public address"],
    ["http://2130706433/x", "allow", "127.0.0.1 is not a public address"],
    ["http://0x7f.1/x", "allow", "127.0.0.1 is not a public address"],
    ["https://93.184.216.34/x", "refuse", undefined],
  ] as const)("when %s is a webhook target (unresolved: %s), then %s", async (url, unresolved, reason) => {
    const got = await privateTarget(url, { unresolved, resolve });
    if (reason === undefined) expect(got).toBeUndefined();
    else expect(got).toContain(reason);
  });
});

describe.each(BACKENDS)("edge input on %s", (backend) => {
  let t: TestTally;
  const api = () => request(t.tally.app);
  const web = mkdtempSync(join(tmpdir(), "tally-web-stub-"));
  mkdirSync(join(web, "assets"));
  writeFileSync(join(web, "index.html"), "<!doctype html><title>Tally</title>");
  writeFileSync(join(web, "assets", "index-AbC123.js"), "console.log(1)");

  beforeAll(async () => {
    t = await startTestTally(backend, { webDirectory: web });
    await defineMeters(t.tally, { edge_calls: "sum" });
    const dims = await api()
      .put("/v1/meters/edge_tokens")
      .set(admin)
      .send({ name: "Tokens", unit: "token", aggregation: "sum", dimensions: ["model"] });
    expect(dims.status).toBe(201);
    expect((await api().put("/v1/customers/edge_c").set(admin).send({ name: "Edge" })).status).toBe(201);
    expect((await api().put("/v1/plans/edge_plan").set(admin).send({ name: "Edge", currency: "USD" })).status).toBe(
      201,
    );
    const sub = await api()
      .put("/v1/customers/edge_c/subscription")
      .set(admin)
      .send({ plan: "edge_plan", start: day(NOW - 60 * DAY) });
    expect(sub.status).toBe(200);
  });
  afterAll(async () => {
    await t?.close();
    rmSync(web, { recursive: true, force: true });
  });

  it("when a path is spelled another way (case, trailing slash), then 404 — only the canonical spelling is served", async () => {
    for (const path of [
      "/embed/customer?token=tally_pt_x",
      "/dashboard",
      "/dashboard/",
      "/dashboard/assets/index-AbC123.js",
      "/v1/meters",
      "/healthz",
    ]) {
      const res = await api().get(path).set(admin);
      expect(res.status, path).toBe(200);
    }
    for (const path of [
      "/EMBED/customer?token=tally_pt_x",
      "/Embed/Customer?token=tally_pt_x",
      "/embed/CUSTOMER",
      "/embed/customer/?token=tally_pt_x",
      "/DASHBOARD",
      "/Dashboard/",
      "/dashboard/ASSETS/index-AbC123.js",
      "/V1/meters",
      "/v1/Meters",
      "/v1/meters/",
      "/v1/customers/edge_c/",
      "/v1/customers/edge_c/SUMMARY",
      "/HEALTHZ",
      "/healthz/",
    ]) {
      const res = await api().get(path).set(admin);
      expect(res.status, path).toBe(404);
      expect(res.body.code, path).toBe("route_not_found");
      expect(res.text, path).not.toContain("<!doctype html>");
    }
  });

  it("when any text field holds NUL or an unpaired surrogate, then 400 naming the field, and nothing is stored", async () => {
    const meter = { name: "M", unit: "u", aggregation: "sum" };
    const price = { meter: "edge_tokens", effective_from: day(NOW - 59 * DAY), model: "per_unit", unit_price: "1" };
    const cases: { method: "put" | "post" | "get"; path: string; body?: object; field: string }[] = [
      { method: "put", path: "/v1/customers/nul_1", body: { name: "a\u0000b" }, field: "name" },
      { method: "put", path: "/v1/customers/nul_2", body: { name: "a\ud800b" }, field: "name" },
      { method: "put", path: "/v1/customers/nul_3", body: { name: "\udfff" }, field: "name" },
      {
        method: "put",
        path: "/v1/customers/nul_4",
        body: { stripe_customer_id: "cus_\u0000" },
        field: "stripe_customer_id",
      },
      { method: "put", path: "/v1/customers/nul_5", body: { email: "a\u0000@example.com" }, field: "email" },
      { method: "put", path: "/v1/meters/nul_m1", body: { ...meter, name: "x\u0000" }, field: "name" },
      { method: "put", path: "/v1/meters/nul_m2", body: { ...meter, unit: "\udc00" }, field: "unit" },
      {
        method: "put",
        path: "/v1/meters/nul_m3",
        body: { ...meter, stripe_event_name: "ev\u0000" },
        field: "stripe_event_name",
      },
      { method: "put", path: "/v1/meters/nul_m4", body: { ...meter, dimensions: ["a\ud800"] }, field: "dimensions[0]" },
      { method: "put", path: "/v1/plans/nul_p1", body: { name: "P\u0000", currency: "USD" }, field: "name" },
      { method: "put", path: "/v1/plans/nul_p2", body: { name: "P\ud800", currency: "USD" }, field: "name" },
      {
        method: "post",
        path: "/v1/customers/edge_c/credit-grants",
        body: { amount: "5", description: "gift\u0000" },
        field: "description",
      },
      {
        method: "post",
        path: "/v1/customers/edge_c/credit-grants",
        body: { amount: "5", description: "gift\ud83d" },
        field: "description",
      },
      {
        method: "post",
        path: "/v1/webhook-endpoints",
        body: { url: "https://hooks.example.com/\u0000" },
        field: "url",
      },
      {
        method: "post",
        path: "/v1/plans/edge_plan/prices",
        body: {
          ...price,
          group_by: ["model"],
          overrides: [{ match: { model: "gpt\u0000" }, model: "per_unit", unit_price: "2" }],
        },
        field: "overrides[0].match.model",
      },
      {
        method: "post",
        path: "/v1/plans/edge_plan/prices",
        body: { ...price, group_by: ["model"], overrides: [{ match: { "mo\u0000del": "x" }, model: "per_unit" }] },
        field: "overrides[0].match",
      },
      { method: "post", path: "/v1/api-keys", body: { scopes: ["read"], customer: "c\u0000" }, field: "customer" },
      { method: "get", path: "/v1/alerts?customer=a%00b", field: "customer" },
      { method: "get", path: "/v1/customers/a%00b", field: "id" },
      { method: "post", path: "/v1/customers/edge_c/credit-grants/g%00/void", field: "grant" },
    ];
    for (const c of cases) {
      const where = `${c.method.toUpperCase()} ${c.path} ${JSON.stringify(c.body)}`;
      const req = api()[c.method](c.path).set(admin);
      const res = c.body ? await req.send(c.body) : await req;
      expect(res.status, `${where}: ${res.text}`).toBe(400);
      expect(res.headers["content-type"], where).toMatch(/^application\/problem\+json/);
      expect(res.body.code, where).toBe("validation_failed");
      expect(
        res.body.errors.map((e: { field: string }) => e.field),
        where,
      ).toEqual([c.field]);
      expect(res.body.errors[0].message, where).toMatch(/NUL characters or unpaired surrogates/);
      expect(res.text, where).not.toMatch(/invalid byte sequence|unsupported Unicode/);
    }
    for (const id of ["nul_1", "nul_2", "nul_3", "nul_4", "nul_5"]) {
      expect((await api().get(`/v1/customers/${id}`).set(admin)).status, id).toBe(404);
    }
    const meters = (await api().get("/v1/meters").set(admin)).body.data.map((m: { key: string }) => m.key);
    expect(meters.filter((k: string) => k.startsWith("nul_"))).toEqual([]);
    expect((await api().get("/v1/customers/edge_c/credits").set(admin)).body.grants).toEqual([]);
    // A body nested deeper than any stack: refused as a body, never a crash.
    const deep = `{"name":${"[".repeat(200_000)}"\\u0000"${"]".repeat(200_000)}}`;
    const res = await api().put("/v1/customers/nul_deep").set(admin).set("Content-Type", "application/json").send(deep);
    expect(res.status).toBe(400);
  });

  it("when a period is not a month Tally reads as written, then 400 naming period on every route that takes one", async () => {
    const routes: ((p: string) => Promise<request.Response>)[] = [
      (p) => api().get(`/v1/customers/edge_c/summary?period=${p}`).set(admin),
      (p) => api().get(`/v1/customers/edge_c/invoice?period=${p}`).set(admin),
      (p) => api().get(`/v1/invoices?period=${p}`).set(admin),
      (p) => api().get(`/v1/alerts?period=${p}`).set(admin),
      (p) => api().get(`/v1/stripe/reconciliation?period=${p}`).set(admin),
      (p) =>
        api()
          .post("/v1/simulations")
          .set(admin)
          .send({
            plan: "edge_plan",
            period: p,
            prices: [{ meter: "edge_calls", model: "per_unit", unit_price: "1" }],
          }),
    ];
    for (const period of [
      "9999-12",
      "9999-01",
      "0000-01",
      "0099-12",
      "0050-06",
      "1969-12",
      "2026-13",
      "2026-00",
      "26-01",
    ]) {
      for (const [i, call] of routes.entries()) {
        const res = await call(period);
        expect(res.status, `${period} route ${i}: ${res.text}`).toBe(400);
        expect(res.body.errors.map((e: { field: string }) => e.field)).toEqual(["period"]);
      }
    }
    for (const period of ["1970-01", "9998-12", month]) {
      for (const [i, call] of routes.entries()) {
        const res = await call(period);
        expect(res.status, `${period} route ${i}: ${res.text}`).toBe(200);
      }
    }
    const far = await api().get("/v1/customers/edge_c/summary?period=9998-12").set(admin);
    expect(far.body.period).toEqual({ start: "9998-12-01T00:00:00Z", end: "9999-01-01T00:00:00Z" });
  });

  it("when ids or dimension values hide a formula behind , or ;, then no cell of the CSV starts one, whatever the separator", async () => {
    const customers = [
      ";=1+1",
      'a;=HYPERLINK("http://evil.example")',
      "a,+1",
      'x; "@SUM(A1)',
      "b;-2",
      "=cmd",
      "plain-id",
    ];
    const models = [";=cmd", "gpt,-4", "=x", "ok"];
    const events = [
      ...customers.map((c, i) => ({ id: `csv-${i}`, customer: c, meter: "edge_calls", value: "5" })),
      ...models.map((model, i) => ({
        id: `csv-d${i}`,
        customer: "edge_c",
        meter: "edge_tokens",
        properties: { model },
      })),
    ];
    const posted = await postJson(t.tally, events);
    expect(posted.status, posted.text).toBe(202);
    const range = `from=${day(NOW - 40 * DAY)}&to=${day(NOW + 40 * DAY)}`;
    const plain = await api().get(`/v1/usage/export?granularity=month&${range}`).set(admin);
    const grouped = await api()
      .get(`/v1/usage/export?granularity=month&meter=edge_tokens&group_by=model&${range}`)
      .set(admin);
    for (const res of [plain, grouped]) {
      expect(res.status, res.text).toBe(200);
      const lines = res.text.split(/\r?\n/).filter((l) => l !== "");
      expect(lines.length).toBeGreaterThan(1);
      for (const line of lines) {
        for (const sep of [",", ";"]) {
          for (const cell of cellsSplitOn(line, sep)) expect(cell, `${sep} in ${line}`).not.toMatch(FORMULA_START);
        }
      }
    }
    // The quote goes right before each formula character, so the id is still readable.
    expect(plain.text).toContain(";'=1+1");
    expect(plain.text).toContain('"a,\'+1"');
    expect(plain.text).toContain("'=cmd");
    expect(plain.text).toContain("plain-id,edge_calls");
    expect(grouped.text).toContain(`""model"" : "";'=cmd""`);
    expect(grouped.text).toContain(`""model"" : ""gpt,'-4""`);
    expect(grouped.text).toContain(`""model"" : ""ok""`);
  });

  describe("webhook endpoints", () => {
    it.each([
      "http://127.0.0.1:9/hook",
      "http://127.1/hook",
      "http://2130706433/hook",
      "http://localhost:8080/hook",
      "http://app.localhost/hook",
      "http://[::1]:9/hook",
      "http://[::ffff:127.0.0.1]/hook",
      "http://169.254.169.254/latest/meta-data/",
      "http://10.0.0.5/hook",
      "http://172.20.1.1/hook",
      "http://192.168.0.10/hook",
      "http://100.100.100.200/hook",
      "http://0.0.0.0:3000/hook",
      "http://[fd00::5]/hook",
      "http://[fe80::1]/hook",
      "https://[64:ff9b::a9fe:a9fe]/hook",
    ])("when one would point at %s, then 422 naming url", async (url) => {
      const res = await api().post("/v1/webhook-endpoints").set(admin).send({ url });
      expect(res.status, res.text).toBe(422);
      expect(res.body.code).toBe("private_address");
      expect(res.body.errors).toEqual([
        { field: "url", message: expect.stringContaining("TALLY_WEBHOOK_ALLOW_PRIVATE") },
      ]);
    });

    it("when one points at a public address or a name that does not resolve yet, then it is registered", async () => {
      for (const url of ["https://93.184.216.34/hook", "https://[2606:4700:4700::1111]/x", "https://hooks.invalid/x"]) {
        expect((await api().post("/v1/webhook-endpoints").set(admin).send({ url })).status, url).toBe(201);
      }
      await t.tally.ctx.db.query("DELETE FROM webhook_endpoints");
    });

    it("when an endpoint stored earlier points at a private address, then each delivery is refused and logged, and nothing is sent", async () => {
      let hits = 0;
      const server = http.createServer((_req, res) => {
        hits += 1;
        res.end();
      });
      server.listen(0, "127.0.0.1");
      await once(server, "listening");
      try {
        const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
        // As registered while TALLY_WEBHOOK_ALLOW_PRIVATE was true, or by a name that resolved elsewhere then.
        await t.tally.ctx.db.query(
          "INSERT INTO webhook_endpoints (id, url, secret) VALUES ('whe_priv', $1, 'whsec_x')",
          [url],
        );
        expect(
          (await api().put("/v1/customers/edge_c/limits/edge_calls").set(admin).send({ soft: "1", unit: "quantity" }))
            .status,
        ).toBe(200);
        const event = { id: "hook-1", customer: "edge_c", meter: "edge_calls", value: "2" };
        expect((await postJson(t.tally, [event])).status).toBe(202);
        await until(
          async () => (await api().get("/v1/alerts?customer=edge_c").set(admin)).body.data,
          (alerts) => alerts.length > 0,
        );
        // The alert starts a delivery run by itself; a run from here makes sure one happened.
        const { value: attempts } = await until(
          async () => {
            expect((await api().post("/v1/jobs/deliver-webhooks/run").set(admin)).status).toBe(200);
            return (await t.tally.ctx.db.query<{ error: string }>("SELECT error FROM webhook_attempts")).rows;
          },
          (rows) => rows.length > 0,
        );
        expect(attempts.map((r) => r.error)).toEqual([
          "refused: 127.0.0.1 is not a public address (TALLY_WEBHOOK_ALLOW_PRIVATE)",
        ]);
        const { rows } = await t.tally.ctx.db.query<{ status: string }>("SELECT status FROM webhook_deliveries");
        expect(rows.map((r) => r.status)).toEqual(["pending"]);
        expect(hits).toBe(0);
      } finally {
        server.close();
      }
    });
  });
});

describe("webhook endpoints with TALLY_WEBHOOK_ALLOW_PRIVATE=true", () => {
  it("when one points at 127.0.0.1, then it is registered", async () => {
    const t = await startTestTally("embedded", { env: { TALLY_WEBHOOK_ALLOW_PRIVATE: "true" } });
    try {
      const res = await request(t.tally.app)
        .post("/v1/webhook-endpoints")
        .set(admin)
        .send({ url: "http://127.0.0.1:9/h" });
      expect(res.status).toBe(201);
    } finally {
      await t.close();
    }
  });
});
