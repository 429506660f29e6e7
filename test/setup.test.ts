// Setup endpoints: meters, customers, API keys — validation and problem+json on both engines.
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BACKENDS } from "./helpers/databases.js";
import { admin, startTestTally, type TestTally } from "./helpers/tally.js";

describe.each(BACKENDS)("setup endpoints on %s", (backend) => {
  let t: TestTally;
  let app: TestTally["tally"]["app"];
  beforeAll(async () => {
    t = await startTestTally(backend);
    app = t.tally.app;
  });
  afterAll(() => t.close());

  describe("meters", () => {
    it("when a meter is created, then 201 with the meter; when updated, then 200", async () => {
      const created = await request(app)
        .put("/v1/meters/api_calls")
        .set(admin)
        .send({ name: "API calls", unit: "call", aggregation: "sum" });
      expect(created.status).toBe(201);
      expect(created.body).toMatchObject({
        key: "api_calls",
        name: "API calls",
        unit: "call",
        aggregation: "sum",
        stripe_event_name: null,
        stripe_scale: "1",
      });
      const updated = await request(app).put("/v1/meters/api_calls").set(admin).send({
        name: "API requests",
        unit: "request",
        aggregation: "sum",
        stripe_event_name: "api_requests",
        stripe_scale: "1000",
      });
      expect(updated.status).toBe(200);
      expect(updated.body).toMatchObject({
        name: "API requests",
        stripe_event_name: "api_requests",
        stripe_scale: "1000",
      });
    });

    it("when meters are listed, then they come as {data: [...]} ordered by key", async () => {
      await request(app)
        .put("/v1/meters/storage_gb")
        .set(admin)
        .send({ name: "Storage", unit: "GB", aggregation: "max" });
      const res = await request(app).get("/v1/meters").set(admin);
      expect(res.status).toBe(200);
      expect(res.body.data.map((m: { key: string }) => m.key)).toEqual(["api_calls", "storage_gb"]);
    });

    it.each([
      [{ name: "x", unit: "u", aggregation: "median" }, "aggregation"],
      [{ unit: "u", aggregation: "sum" }, "name"],
      [{ name: "x", unit: "u", aggregation: "sum", stripe_scale: "-1" }, "stripe_scale"],
      [{ name: "x", unit: "u", aggregation: "sum", extra: 1 }, "(body)"],
      [{ name: 5, unit: "u", aggregation: "sum" }, "name"],
    ])("when the body is %j, then 400 problem+json naming %s", async (body, field) => {
      const res = await request(app).put("/v1/meters/m1").set(admin).send(body);
      expect(res.status).toBe(400);
      expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
      expect(res.body).toMatchObject({ status: 400, code: "validation_failed", title: "Bad Request" });
      expect(res.body.errors.map((e: { field: string }) => e.field)).toContain(field);
    });

    it("when the meter key is not a valid key, then 400 naming the path field", async () => {
      const res = await request(app)
        .put("/v1/meters/has%20space")
        .set(admin)
        .send({ name: "x", unit: "u", aggregation: "sum" });
      expect(res.status).toBe(400);
      expect(res.body.errors[0].field).toBe("key");
    });
  });

  describe("customers", () => {
    it("when a customer with an e-mail address as id is created, then 201 and it can be read back", async () => {
      const id = "ops+billing@example.com";
      const res = await request(app)
        .put(`/v1/customers/${encodeURIComponent(id)}`)
        .set(admin)
        .send({ name: "Example Inc", email: "ops@example.com" });
      expect(res.status).toBe(201);
      expect(res.body).toMatchObject({
        id,
        name: "Example Inc",
        email: "ops@example.com",
        stripe_customer_id: null,
        subscription: null,
      });
      const got = await request(app)
        .get(`/v1/customers/${encodeURIComponent(id)}`)
        .set(admin);
      expect(got.status).toBe(200);
      expect(got.body.id).toBe(id);
    });

    it("when a customer is updated with some fields, then the others keep their value and null clears", async () => {
      await request(app).put("/v1/customers/c2").set(admin).send({ name: "Two", email: "two@example.com" });
      const res = await request(app)
        .put("/v1/customers/c2")
        .set(admin)
        .send({ stripe_customer_id: "cus_123", email: null });
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ name: "Two", email: null, stripe_customer_id: "cus_123" });
    });

    it("when a customer is created with no body, then 201", async () => {
      const res = await request(app).put("/v1/customers/bare").set(admin);
      expect(res.status).toBe(201);
    });

    it("when a customer does not exist, then 404 problem+json", async () => {
      const res = await request(app).get("/v1/customers/nobody").set(admin);
      expect(res.status).toBe(404);
      expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
    });

    it("when the id is longer than 128 characters, then 400", async () => {
      const res = await request(app)
        .put(`/v1/customers/${"x".repeat(129)}`)
        .set(admin)
        .send({});
      expect(res.status).toBe(400);
    });

    it("when the e-mail is not an address, then 400 naming email", async () => {
      const res = await request(app).put("/v1/customers/c3").set(admin).send({ email: "not-an-email" });
      expect(res.status).toBe(400);
      expect(res.body.errors[0].field).toBe("email");
    });
  });

  describe("malformed requests never give a 500", () => {
    it("when the JSON is malformed, then 400 malformed_json", async () => {
      const res = await request(app)
        .put("/v1/meters/m")
        .set(admin)
        .set("Content-Type", "application/json")
        .send('{"name": ');
      expect(res.status).toBe(400);
      expect(res.body.code).toBe("malformed_json");
    });

    it("when the body is not JSON, then 415", async () => {
      const res = await request(app).put("/v1/meters/m").set(admin).set("Content-Type", "text/plain").send("name=x");
      expect(res.status).toBe(415);
      expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
    });

    it("when the body is larger than 1 MiB, then 413", async () => {
      const res = await request(app)
        .put("/v1/customers/big")
        .set(admin)
        .send({ name: "x".repeat(1024 * 1024 + 10) });
      expect(res.status).toBe(413);
      expect(res.body.code).toBe("body_too_large");
    });

    it("when the body is a JSON array or a string, then 400", async () => {
      for (const body of ["[]", '"x"', "null", "42"]) {
        const res = await request(app)
          .put("/v1/meters/m")
          .set(admin)
          .set("Content-Type", "application/json")
          .send(body);
        expect(res.status, body).toBe(400);
      }
    });

    it("when the route does not exist, then 404 problem+json", async () => {
      const res = await request(app).get("/v1/nothing").set(admin);
      expect(res.status).toBe(404);
      expect(res.body.code).toBe("route_not_found");
    });

    it("when a path segment is badly percent-encoded, then 4xx not 500", async () => {
      const res = await request(app).get("/v1/customers/%E0%A4%A").set(admin);
      expect(res.status).toBeGreaterThanOrEqual(400);
      expect(res.status).toBeLessThan(500);
    });
  });
});
