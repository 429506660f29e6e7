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
      expect(
        (await api().put("/v1/meters/calls").set(admin).send({ name: "C", unit: "c", aggregation: "sum" })).status,
      ).toBe(201);
      expect((await api().put("/v1/customers/acme").set(admin).send({})).status).toBe(201);
      const keys: Record<string, { id: string; key: string }> = {};
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
      expect(
        (
          await api()
            .put("/v1/customers/acme/limits/calls")
            .set(as(k("admin")))
            .send({ soft: "1", unit: "quantity" })
        ).status,
      ).toBe(200);
      const events = { events: [{ id: "e1", customer: "acme", meter: "calls", value: "5" }] };
      expect(
        (
          await api()
            .post("/v1/events")
            .set(as(k("ingest")))
            .send(events)
        ).status,
      ).toBe(202);
      expect(
        (
          await api()
            .get("/v1/alerts?customer=acme")
            .set(as(k("read")))
        ).status,
      ).toBe(200);
      expect(
        (
          await api()
            .get("/v1/customers/acme/summary")
            .set(as(k("bound")))
        ).status,
      ).toBe(200);
      expect(
        (
          await api()
            .get("/v1/customers/other/summary")
            .set(as(k("bound")))
        ).status,
      ).toBe(404);
      expect(
        (
          await api()
            .get("/v1/meters")
            .set(as(k("read")))
        ).status,
      ).toBe(403);
      expect((await api().get("/v1/meters").set(as(wrong))).status).toBe(401);
      expect(
        (
          await api()
            .get("/v1/meters")
            .set({ Authorization: `Basic ${envAdmin}` })
        ).status,
      ).toBe(401);
      expect(
        (
          await api()
            .get("/v1/meters")
            .set({ Authorization: `Bearer ${envAdmin} ${wrong}` })
        ).status,
      ).toBe(401);
      expect((await api().delete(`/v1/api-keys/${keys.doomed?.id}`).set(admin)).status).toBe(204);
      expect(
        (
          await api()
            .get("/v1/usage")
            .set(as(k("doomed")))
        ).status,
      ).toBe(401);
      expect(
        (
          await api()
            .post("/v1/events")
            .set(as(k("ingest")))
            .send("{nope")
            .type("json")
        ).status,
      ).toBe(400);
      expect(
        (
          await api()
            .post("/v1/events")
            .set(as(k("ingest")))
            .send({ events: [{ id: 1 }] })
        ).status,
      ).toBe(400);
      expect(
        (
          await api()
            .post("/v1/events")
            .set(as(k("ingest")))
            .type("text/plain")
            .send("x")
        ).status,
      ).toBe(415);
      expect((await api().post("/v1/jobs/evaluate-limits/run").set(admin)).status).toBe(200);
      expect((await api().post("/v1/jobs/deliver-webhooks/run").set(admin)).status).toBe(200);

      const client = httpClient(await tally.listen(0, "127.0.0.1"), 2);
      try {
        for (let i = 0; i < 3; i++) {
          const res = await client.send({ method: "GET", path: "/v1/entitlements/acme/calls", headers: as(k("read")) });
          expect(res.status).toBe(200);
        }
        const huge = await client.send({ method: "GET", path: `/v1/meters?${"x".repeat(20_000)}`, headers: admin });
        expect(huge.status).toBe(431);
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
