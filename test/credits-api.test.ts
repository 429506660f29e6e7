// Prepaid credits over HTTP, on both engines, with real events: the worked example (balance, invoice and
// summary agree to the cent), a grant effective later, expiry and void, give-backs from a correction, grants
// kept across periods and a restart, and the grant API's rules (Idempotency-Key, currency, validation).
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../src/clock.js";
import { BACKENDS } from "./helpers/databases.js";
import { defineMeters, postJson } from "./helpers/events.js";
import { admin, startTestTally, type TestTally } from "./helpers/tally.js";

const START = "2026-11-01T00:00:00Z";
const hour = (n: number, minute = 30) => new Date(Date.parse(START) + (n - 1) * 3_600_000 + minute * 60_000);

describe.each(BACKENDS)("credits on %s", (backend) => {
  let t: TestTally;
  let clock: ManualClock;
  let seq = 0;
  const api = () => request(t.tally.app);
  const put = (path: string, body: object) => api().put(path).set(admin).send(body);
  const post = (path: string, body: object, headers: Record<string, string> = {}) =>
    api()
      .post(path)
      .set({ ...admin, ...headers })
      .send(body);
  const customer = async (id: string, body: object = {}) => {
    expect((await put(`/v1/customers/${id}`, body)).status).toBe(201);
    const sub = await put(`/v1/customers/${id}/subscription`, { plan: "calls", start: "2026-10-01T00:00:00Z" });
    expect(sub.status, JSON.stringify(sub.body)).toBe(200);
  };
  const grant = async (id: string, body: object, headers: Record<string, string> = {}) => {
    const res = await post(`/v1/customers/${id}/credit-grants`, body, headers);
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    return res.body;
  };
  const calls = async (id: string, value: number, at: Date) => {
    const res = await postJson(t.tally, [
      { id: `e${++seq}`, customer: id, meter: "calls", value, timestamp: at.toISOString() },
    ]);
    expect(res.status, JSON.stringify(res.body)).toBe(202);
  };
  const read = async (path: string) => {
    const res = await api().get(path).set(admin);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return res.body;
  };
  const credits = (id: string) => read(`/v1/customers/${id}/credits`);
  const invoice = (id: string, period = "2026-11") => read(`/v1/customers/${id}/invoice?period=${period}`);
  const summary = (id: string, period = "2026-11") => read(`/v1/customers/${id}/summary?period=${period}`);

  beforeAll(async () => {
    clock = new ManualClock(START);
    t = await startTestTally(backend, { clock });
    await defineMeters(t.tally, { calls: "sum", storage: "max" });
    expect((await put("/v1/plans/calls", { name: "Calls", currency: "USD" })).status).toBe(201);
    for (const [meter, unit_price] of [
      ["calls", "0.01"],
      ["storage", "1"],
    ]) {
      const res = await post("/v1/plans/calls/prices", {
        meter,
        effective_from: "2026-01-01T00:00:00Z",
        model: "per_unit",
        unit_price,
        base_fee: meter === "calls" ? "20" : undefined,
      });
      expect(res.status, JSON.stringify(res.body)).toBe(201);
    }
  });
  afterAll(() => t.close());

  it("when the issue's worked example runs, then the balance, the invoice and the summary agree to the cent", async () => {
    clock.set(START);
    await customer("worked");
    const a = await grant("worked", { amount: "5.00", priority: 10, effective_at: START, description: "A" });
    const b = await grant("worked", { amount: "3", effective_at: START, description: "B" });
    expect(a).toMatchObject({ amount: "5.00", remaining: "5.00", currency: "USD", priority: 10, status: "active" });
    expect(b).toMatchObject({ amount: "3.00", priority: 50, expires_at: null, meters: null, voided_at: null });

    clock.set(hour(1, 45));
    await calls("worked", 600, hour(1));
    let c = await credits("worked");
    expect(c).toMatchObject({
      customer: "worked",
      currency: "USD",
      balance: "2.00",
      credit_mode: "credit_then_invoice",
    });
    expect(c.grants.map((g: { remaining: string }) => g.remaining)).toEqual(["0.00", "2.00"]);

    clock.set(hour(2, 45));
    await calls("worked", 400, hour(2));
    c = await credits("worked");
    expect(c.balance).toBe("0.00");
    expect(c.grants.map((g: { applied: string }) => g.applied)).toEqual(["5.00", "3.00"]);

    const inv = await invoice("worked");
    // The base fee (20.00) is never paid by credits: usage 10.00 + base fee 20.00 = 30.00, credits 8.00.
    expect(inv).toMatchObject({ subtotal: "30.00", credits: "8.00", total: "22.00" });
    expect(inv.lines.filter((l: { kind: string }) => l.kind === "credit")).toEqual([
      { meter: null, kind: "credit", description: `Prepaid credits: A (grant ${a.id})`, amount: "-5.00", grant: a.id },
      { meter: null, kind: "credit", description: `Prepaid credits: B (grant ${b.id})`, amount: "-3.00", grant: b.id },
    ]);
    const sum = await summary("worked");
    expect(sum).toMatchObject({ subtotal: "30.00", credits: "8.00", total: "22.00" });
    expect(sum.credit_lines.map((l: { amount: string }) => l.amount)).toEqual(["-5.00", "-3.00"]);
  });

  it("when the plan has no base fee, then the worked example's invoice is subtotal 10.00, credits 8.00, total 2.00", async () => {
    expect((await put("/v1/plans/bare", { name: "Bare", currency: "USD" })).status).toBe(201);
    const res = await post("/v1/plans/bare/prices", {
      meter: "calls",
      effective_from: "2026-01-01T00:00:00Z",
      model: "per_unit",
      unit_price: "0.01",
    });
    expect(res.status).toBe(201);
    clock.set(START);
    expect((await put("/v1/customers/bare", {})).status).toBe(201);
    expect((await put("/v1/customers/bare/subscription", { plan: "bare", start: "2026-10-01T00:00:00Z" })).status).toBe(
      200,
    );
    const a = await grant("bare", { amount: "5.00", priority: 10 });
    const b = await grant("bare", { amount: "3.00" });
    const late = await grant("bare", { amount: "10.00", effective_at: hour(3, 0).toISOString() });
    clock.set(hour(2, 50));
    await calls("bare", 600, hour(1));
    await calls("bare", 400, hour(2));
    const inv = await invoice("bare");
    expect(inv).toMatchObject({ subtotal: "10.00", credits: "8.00", total: "2.00" });
    expect(
      inv.lines
        .filter((l: { kind: string }) => l.kind === "credit")
        .map((l: { grant: string; amount: string }) => [l.grant, l.amount]),
    ).toEqual([
      [a.id, "-5.00"],
      [b.id, "-3.00"],
    ]);
    // The grant effective from hour 3 paid nothing of hours 1–2, and is not in the balance before hour 3.
    let c = await credits("bare");
    expect(c.grants.find((g: { id: string }) => g.id === late.id)).toMatchObject({
      remaining: "10.00",
      applied: "0.00",
      status: "pending",
    });
    expect(c.balance).toBe("0.00");
    clock.set(hour(3, 10));
    await calls("bare", 150, hour(3, 5));
    c = await credits("bare");
    expect(c.balance).toBe("8.50");
    expect(await invoice("bare")).toMatchObject({ subtotal: "11.50", credits: "9.50", total: "2.00" });
  });

  it("when a grant is retried with the same Idempotency-Key, then the same grant answers, never a second one", async () => {
    clock.set(START);
    await customer("idem");
    const body = { amount: "7.50", description: "pack" };
    const first = await grant("idem", body, { "Idempotency-Key": "order-1" });
    const again = await grant("idem", body, { "Idempotency-Key": "order-1" });
    expect(again.id).toBe(first.id);
    const racing = await Promise.all(
      Array.from({ length: 5 }, () => post("/v1/customers/idem/credit-grants", body, { "Idempotency-Key": "order-2" })),
    );
    expect(racing.map((r) => r.status)).toEqual([201, 201, 201, 201, 201]);
    expect(new Set(racing.map((r) => r.body.id)).size).toBe(1);
    const other = await post("/v1/customers/idem/credit-grants", { amount: "1" }, { "Idempotency-Key": "order-1" });
    expect(other.status).toBe(409);
    expect(other.body.code).toBe("idempotency_key_reused");
    const c = await credits("idem");
    expect(c.grants).toHaveLength(2);
    expect(c.balance).toBe("15.00");
  });

  it("when a grant is invalid, then 404, 422 or 400 says what and where", async () => {
    expect((await post("/v1/customers/ghost/credit-grants", { amount: "1" })).status).toBe(404);
    expect((await put("/v1/customers/no-plan", {})).status).toBe(201);
    const noPlan = await post("/v1/customers/no-plan/credit-grants", { amount: "1" });
    expect(noPlan.status).toBe(422);
    expect(noPlan.body.code).toBe("no_subscription");
    await customer("rules");
    const cases: [object, number, string][] = [
      [{ amount: "1.005" }, 422, "amount_precision"],
      [{ amount: "0" }, 422, "invalid_amount"],
      [{ amount: "-1" }, 400, "validation_failed"],
      [{ amount: "1", priority: 101 }, 400, "validation_failed"],
      [{ amount: "1", effective_at: START, expires_at: START }, 422, "expiry_before_effective"],
      [{ amount: "1", meters: ["nope"] }, 422, "unknown_meter"],
      // Older than the event window (35 days by default): that period is closed, its invoice no longer corrected.
      [{ amount: "1", effective_at: "2026-09-01T00:00:00Z" }, 422, "effective_at_too_old"],
      [{ amount: "1", colour: "red" }, 400, "validation_failed"],
    ];
    for (const [body, status, code] of cases) {
      const res = await post("/v1/customers/rules/credit-grants", body);
      expect([res.status, res.body.code], JSON.stringify(body)).toEqual([status, code]);
    }
    expect((await post("/v1/customers/rules/credit-grants/cg_nope/void", {})).status).toBe(404);
  });

  it("when a read key is bound to a customer, then it reads that customer's credits only, and cannot grant", async () => {
    await customer("bound");
    await grant("bound", { amount: "2" });
    const key = await post("/v1/api-keys", { scopes: ["read"], customer: "bound" });
    const as = { Authorization: `Bearer ${key.body.key}` };
    expect((await api().get("/v1/customers/bound/credits").set(as)).body.balance).toBe("2.00");
    expect((await api().get("/v1/customers/worked/credits").set(as)).status).toBe(404);
    expect((await api().post("/v1/customers/bound/credit-grants").set(as).send({ amount: "1" })).status).toBe(403);
  });

  it("when a grant is voided or expires, then it pays the hours it overlaps and what is left is forfeited", async () => {
    clock.set(hour(1, 0));
    await customer("ends");
    const voided = await grant("ends", { amount: "4.00", priority: 1 });
    const expiring = await grant("ends", { amount: "3.00", priority: 2, expires_at: hour(2, 30).toISOString() });
    clock.set(hour(1, 20));
    await calls("ends", 100, hour(1, 10)); // 1.00 from the first grant
    const v = await post(`/v1/customers/ends/credit-grants/${voided.id}/void`, {});
    expect(v.status).toBe(200);
    expect(v.body).toMatchObject({ id: voided.id, voided_at: hour(1, 20).toISOString().replace(".000", "") });
    const again = await post(`/v1/customers/ends/credit-grants/${voided.id}/void`, {});
    expect(again.body.voided_at).toBe(v.body.voided_at);
    // Voided at 00:20, it still pays the rest of that hour; from 01:00 on, its remainder is forfeited.
    clock.set(hour(1, 45));
    await calls("ends", 50, hour(1, 40));
    clock.set(hour(2, 10));
    await calls("ends", 100, hour(2, 5)); // the expiring grant pays hour 2
    let c = await credits("ends");
    const byId = (id: string) => c.grants.find((g: { id: string }) => g.id === id);
    expect(byId(voided.id)).toMatchObject({ applied: "1.50", forfeited: "2.50", remaining: "0.00", status: "voided" });
    expect(byId(expiring.id)).toMatchObject({ applied: "1.00", remaining: "2.00", status: "active" });
    clock.set(hour(3, 1));
    c = await credits("ends");
    expect(byId(expiring.id)).toMatchObject({ applied: "1.00", forfeited: "2.00", status: "expired" });
    expect(c.balance).toBe("0.00");
  });

  it("when a correction lowers the charges or an event arrives late, then the ledger is replayed and everything agrees", async () => {
    clock.set(START);
    await customer("late");
    const a = await grant("late", { amount: "5.00", priority: 10 });
    const b = await grant("late", { amount: "5.00", priority: 20 });
    clock.set(hour(3, 30));
    await calls("late", 700, hour(2)); // A 5.00, B 2.00
    await calls("late", -300, hour(3)); // gives back 3.00: B 2.00 first (newest draw), then A 1.00
    let c = await credits("late");
    let applied = Object.fromEntries(c.grants.map((g: { id: string; applied: string }) => [g.id, g.applied]));
    expect(applied).toEqual({ [a.id]: "4.00", [b.id]: "0.00" });
    // A late event for hour 1: the grants are drawn from hour 1 on again.
    await calls("late", 200, hour(1));
    c = await credits("late");
    applied = Object.fromEntries(c.grants.map((g: { id: string; applied: string }) => [g.id, g.applied]));
    expect(applied).toEqual({ [a.id]: "5.00", [b.id]: "1.00" });
    const inv = await invoice("late");
    const sum = await summary("late");
    expect(inv).toMatchObject({ subtotal: "26.00", credits: "6.00", total: "20.00" });
    expect([sum.subtotal, sum.credits, sum.total]).toEqual([inv.subtotal, inv.credits, inv.total]);
    expect(c.balance).toBe("4.00");
  });

  it("when credits carry into the next period, then each period's invoice shows what it used", async () => {
    clock.set(hour(10));
    await customer("carry");
    await grant("carry", { amount: "10.00" });
    await calls("carry", 400, hour(10));
    clock.set("2026-12-01T05:00:00Z");
    await calls("carry", 800, new Date("2026-12-01T04:00:00Z"));
    expect(await invoice("carry", "2026-11")).toMatchObject({ subtotal: "24.00", credits: "4.00", total: "20.00" });
    expect(await invoice("carry", "2026-12")).toMatchObject({ subtotal: "28.00", credits: "6.00", total: "22.00" });
    expect((await credits("carry")).balance).toBe("0.00");
    // A customer without grants keeps the invoice it had before credits existed.
    await customer("plain");
    const plain = await invoice("plain", "2026-12");
    expect(plain.subtotal).toBeUndefined();
    expect(plain.credits).toBeUndefined();
    expect(plain.total).toBe("20.00");
  });
});
