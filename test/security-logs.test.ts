// Keys never in logs, on both engines: everything Tally logs at trace level — start with TALLY_ADMIN_KEY and a first
// start that creates the admin key, keys created, used, refused and revoked, the fast path, errors of every kind, a
// webhook delivery that fails, jobs, a database that went away, shutdown — is captured, and no key, no hash of a
// key and no webhook secret appears in it.
import { createHash, randomBytes } from "node:crypto";
import { Writable } from "node:stream";
import request from "supertest";
import { describe, expect, it } from "vitest";
import { createLogger } from "../src/logger.js";
import { createTally, type Tally } from "../src/tally.js";
import { BACKENDS, createTestDatabase } from "./helpers/databases.js";
import { httpClient } from "./helpers/http.js";
import { testConfig } from "./helpers/tally.js";

/** Every form a key could leak in: as sent, and its SHA-256 (what is stored) in the usual encodings. */
function forms(secret: string): string[] {
  const hash = createHash("sha256").update(secret, "utf8").digest();
  return [secret, hash.toString("hex"), hash.toString("base64"), hash.toString("base64url")];
}

async function startLogged(backend: (typeof BACKENDS)[number], env: Record<string, string>) {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      lines.push(String(chunk));
      done();
    },
  });
  const database = await createTestDatabase(backend);
  const config = testConfig({
    ...(database.url ? { DATABASE_URL: database.url } : {}),
    LOG_LEVEL: "trace",
    // Its webhook endpoint is a closed port on 127.0.0.1.
    TALLY_WEBHOOK_ALLOW_PRIVATE: "true",
    ...env,
  });
  const opened = await database.open();
  const tally = await createTally({
    config,
    logger: createLogger("trace", sink),
    database: opened,
    ownsDatabase: false,
  });
  return {
    tally,
    lines,
    async close() {
      await tally.shutdown();
      await opened.db.close().catch(() => {});
      await database.drop();
    },
  };
}

describe.each(BACKENDS)("keys in logs on %s", (backend) => {
  it("when keys are created, used, refused and revoked, errors happen and the database goes away, then no key, hash or secret is logged", async () => {
    const envAdmin = `env-admin-${randomBytes(16).toString("hex")}`;
    const { tally, lines, close } = await startLogged(backend, { TALLY_ADMIN_KEY: envAdmin });
    const secrets = [envAdmin];
    const api = () => request(tally.app);
    const as = (key: string) => ({ Authorization: `Bearer ${key}` });
    try {
      const admin = as(envAdmin);
      const keys: Record<string, { id: string; key: string }> = {};
      for (const [path, body] of [
        ["/v1/meters/calls", { name: "C", unit: "c", aggregation: "sum" }],
        ["/v1/customers/acme", {}],
      ] as const) {
        expect((await api().put(path).set(admin).send(body)).status, path).toBe(201);
      }
      for (const [name, body] of Object.entries({
        read: { scopes: ["read"] },
        ingest: { scopes: ["ingest"] },
        bound: { scopes: ["read"], customer: "acme" },
        admin: { scopes: ["admin"] },
        doomed: { scopes: ["read"] },
      })) {
        const res = await api().post("/v1/api-keys").set(admin).send(body);
        expect(res.status).toBe(201);
        keys[name] = res.body;
        secrets.push(res.body.key);
      }
      const hook = await api().post("/v1/webhook-endpoints").set(admin).send({ url: "http://127.0.0.1:9/hook" });
      secrets.push(hook.body.secret);
      const wrong = `tally_${randomBytes(32).toString("base64url")}`;
      secrets.push(wrong);
      const k = (name: string) => (keys[name] as { key: string }).key;

      // Keys used, refused and revoked, and errors of every kind, each with the key it was sent with.
      const calls: {
        what: string;
        method: "get" | "put" | "post" | "delete";
        path: string;
        headers: Record<string, string>;
        body?: string | object;
        type?: string;
        status: number;
      }[] = [
        {
          what: "an admin key sets a limit",
          method: "put",
          path: "/v1/customers/acme/limits/calls",
          headers: as(k("admin")),
          body: { soft: "1", unit: "quantity" },
          status: 200,
        },
        {
          what: "an ingest key sends an event",
          method: "post",
          path: "/v1/events",
          headers: as(k("ingest")),
          body: { events: [{ id: "e1", customer: "acme", meter: "calls", value: "5" }] },
          status: 202,
        },
        {
          what: "a read key reads alerts",
          method: "get",
          path: "/v1/alerts?customer=acme",
          headers: as(k("read")),
          status: 200,
        },
        {
          what: "a bound key reads its customer",
          method: "get",
          path: "/v1/customers/acme/summary",
          headers: as(k("bound")),
          status: 200,
        },
        {
          what: "a bound key reads another customer",
          method: "get",
          path: "/v1/customers/other/summary",
          headers: as(k("bound")),
          status: 404,
        },
        {
          what: "a read key asks for admin data",
          method: "get",
          path: "/v1/meters",
          headers: as(k("read")),
          status: 403,
        },
        { what: "an unknown key", method: "get", path: "/v1/meters", headers: as(wrong), status: 401 },
        {
          what: "a key in the wrong scheme",
          method: "get",
          path: "/v1/meters",
          headers: { Authorization: `Basic ${envAdmin}` },
          status: 401,
        },
        {
          what: "two keys at once",
          method: "get",
          path: "/v1/meters",
          headers: { Authorization: `Bearer ${envAdmin} ${wrong}` },
          status: 401,
        },
        {
          what: "a key revoked",
          method: "delete",
          path: `/v1/api-keys/${keys.doomed?.id}`,
          headers: admin,
          status: 204,
        },
        { what: "the revoked key used", method: "get", path: "/v1/usage", headers: as(k("doomed")), status: 401 },
        {
          what: "a body that is not JSON",
          method: "post",
          path: "/v1/events",
          headers: as(k("ingest")),
          body: "{nope",
          type: "json",
          status: 400,
        },
        {
          what: "an invalid event",
          method: "post",
          path: "/v1/events",
          headers: as(k("ingest")),
          body: { events: [{ id: 1 }] },
          status: 400,
        },
        {
          what: "a body of the wrong type",
          method: "post",
          path: "/v1/events",
          headers: as(k("ingest")),
          body: "x",
          type: "text/plain",
          status: 415,
        },
        { what: "limits evaluated", method: "post", path: "/v1/jobs/evaluate-limits/run", headers: admin, status: 200 },
        {
          what: "a webhook that fails",
          method: "post",
          path: "/v1/jobs/deliver-webhooks/run",
          headers: admin,
          status: 200,
        },
      ];
      for (const c of calls) {
        let req = api()[c.method](c.path).set(c.headers);
        if (c.type) req = req.type(c.type);
        const res = await (c.body === undefined ? req : req.send(c.body));
        expect(res.status, c.what).toBe(c.status);
      }

      // The entitlement fast path answers in front of Express: through a listening server.
      const client = httpClient(await tally.listen(0, "127.0.0.1"), 2);
      try {
        const raw = [
          ...Array.from({ length: 3 }, () => ({
            path: "/v1/entitlements/acme/calls",
            headers: as(k("read")),
            status: 200,
          })),
          { path: `/v1/meters?${"x".repeat(20_000)}`, headers: admin, status: 431 },
        ];
        for (const { path, headers, status } of raw) {
          expect((await client.send({ method: "GET", path, headers })).status, path.slice(0, 40)).toBe(status);
        }
      } finally {
        client.close();
      }

      // The database goes away under a request: whatever is logged about it must not carry the caller's key.
      await tally.ctx.db.close();
      const down = await api().get("/v1/customers/acme").set(admin);
      expect(down.status).toBeGreaterThanOrEqual(500);
    } finally {
      await close();
    }

    const text = lines.join("");
    expect(lines.length).toBeGreaterThan(25);
    expect(text).toContain('"route":"/v1/api-keys"'); // the request log was on
    for (const secret of secrets) for (const form of forms(secret)) expect(text.includes(form), form).toBe(false);
  });

  it("when the first start creates the admin key, then it is returned once and never logged", async () => {
    const { tally, lines, close } = await startLogged(backend, { TALLY_ADMIN_KEY: "" });
    let created: Tally["createdAdminKey"];
    try {
      created = tally.createdAdminKey;
      expect(created).toMatch(/^tally_/);
      expect(
        (
          await request(tally.app)
            .get("/v1/meters")
            .set({ Authorization: `Bearer ${created}` })
        ).status,
      ).toBe(200);
    } finally {
      await close();
    }
    const text = lines.join("");
    expect(text).toContain("migrations done");
    for (const form of forms(created as string)) expect(text.includes(form), form).toBe(false);
  });
});
