// The auth matrix: every route × every kind of key, built from the route table so new routes are covered.
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Scope } from "../src/auth/types.js";
import { BACKENDS } from "./helpers/databases.js";
import { admin, bearer, startTestTally, type TestTally } from "./helpers/tally.js";

type RouteInfo = { method: "get" | "put" | "post" | "delete"; path: string; scopes: Scope[] | "public" };

describe.each(BACKENDS)("auth on %s", (backend) => {
  let t: TestTally;
  let keys: Record<"ingest" | "read" | "boundRead" | "readIngest" | "revoked", string>;
  let routes: RouteInfo[];

  beforeAll(async () => {
    t = await startTestTally(backend);
    const app = t.tally.app;
    const make = async (scopes: Scope[], customer?: string) => {
      const res = await request(app).post("/v1/api-keys").set(admin).send({ scopes, customer });
      expect(res.status).toBe(201);
      return res.body as { id: string; key: string };
    };
    const revoked = await make(["admin"]);
    expect((await request(app).delete(`/v1/api-keys/${revoked.id}`).set(admin)).status).toBe(204);
    keys = {
      ingest: (await make(["ingest"])).key,
      read: (await make(["read"])).key,
      boundRead: (await make(["read"], "cust_a")).key,
      readIngest: (await make(["read", "ingest"])).key,
      revoked: revoked.key,
    };
    routes = app.locals.routes as RouteInfo[];
  });
  afterAll(() => t.close());

  const call = (r: RouteInfo, headers: Record<string, string>) => {
    const path = r.path.replace(/\{(\w+)\}/g, "x");
    return request(t.tally.app)
      [r.method](path)
      .set(headers)
      .send(r.method === "get" || r.method === "delete" ? undefined : {});
  };

  it("when a route needs a key and none, a malformed or a revoked one is sent, then 401 problem+json", async () => {
    const protectedRoutes = routes.filter((r) => r.scopes !== "public");
    expect(protectedRoutes.length).toBeGreaterThan(4);
    for (const r of protectedRoutes) {
      for (const headers of [{}, { Authorization: "Basic abc" }, bearer("tally_nonsense"), bearer(keys.revoked)]) {
        const res = await call(r, headers);
        expect(res.status, `${r.method} ${r.path} with ${JSON.stringify(headers)}`).toBe(401);
        expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
        expect(res.headers["www-authenticate"]).toMatch(/^Bearer/);
      }
    }
  });

  it("when a key lacks the route's scope, then 403; when it has it (or admin), then neither 401 nor 403", async () => {
    const kinds: [string, Scope[]][] = [
      [keys.ingest, ["ingest"]],
      [keys.read, ["read"]],
      [keys.readIngest, ["read", "ingest"]],
    ];
    for (const r of routes) {
      if (r.scopes === "public") continue;
      const needed = r.scopes;
      for (const [key, has] of kinds) {
        const res = await call(r, bearer(key));
        const allowed = needed.some((s) => has.includes(s));
        const where = `${r.method} ${r.path} with ${has.join("+")}`;
        if (allowed) expect([401, 403], where).not.toContain(res.status);
        else {
          expect(res.status, where).toBe(403);
          expect(res.body.code, where).toBe("insufficient_scope");
        }
      }
      const res = await call(r, admin);
      expect([401, 403], `${r.method} ${r.path} with admin`).not.toContain(res.status);
      expect(res.status, `${r.method} ${r.path} with admin`).toBeLessThan(500);
    }
  });

  it("when public routes are called without a key, then they answer", async () => {
    for (const path of ["/healthz", "/readyz", "/metrics", "/openapi.json"]) {
      expect((await request(t.tally.app).get(path)).status, path).toBe(200);
    }
  });

  it("when an admin key is bound to a customer, then 422", async () => {
    const res = await request(t.tally.app)
      .post("/v1/api-keys")
      .set(admin)
      .send({ scopes: ["admin"], customer: "c" });
    expect(res.status).toBe(422);
    expect(res.body.code).toBe("admin_key_bound");
  });

  it("when a key is created, then only its hash is stored", async () => {
    const res = await request(t.tally.app)
      .post("/v1/api-keys")
      .set(admin)
      .send({ scopes: ["read"] });
    const { rows } = await t.tally.ctx.db.query<{ key_hash: Uint8Array }>(
      "SELECT key_hash FROM api_keys WHERE id = $1",
      [res.body.id],
    );
    const stored = Buffer.from(rows[0]!.key_hash);
    expect(stored.length).toBe(32);
    expect(stored.toString("utf8")).not.toContain(res.body.key);
    const dump = await t.tally.ctx.db.query("SELECT * FROM api_keys");
    expect(JSON.stringify(dump.rows)).not.toContain(res.body.key);
  });

  it("when an unknown key id is revoked, then 404", async () => {
    expect((await request(t.tally.app).delete("/v1/api-keys/key_nope").set(admin)).status).toBe(404);
  });
});
