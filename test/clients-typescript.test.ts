// The TypeScript client's own rules (ids, Retry-After, backoff, answers, bodies), its typed reads against a real
// Tally, its generated types (no drift from the OpenAPI document) and its independence from Tally's source. The
// delivery behaviour under faults is the conformance suite's (test/clients-conformance.test.ts).
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { classify, encodeBatch, parseRetryAfter, retryDelay } from "../clients/typescript/src/delivery.js";
import {
  ClientClosedError,
  DeliveryError,
  TallyApiError,
  TallyClient,
  uuid7,
} from "../clients/typescript/src/index.js";
import { CLIENT_TYPES_PATH, clientTypes } from "../scripts/openapi.js";
import { defineMeters } from "./helpers/events.js";
import { eventually } from "./helpers/eventually.js";
import { startFaultProxy } from "./helpers/faultProxy.js";
import { ADMIN_KEY, startTestTally, type TestTally } from "./helpers/tally.js";

describe("TypeScript client: rules", () => {
  it("when ids are made, then they are UUIDv7, carry the time and increase strictly (also within a millisecond)", () => {
    const ms = 1_700_000_000_123;
    const id = uuid7(ms);
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const later = Array.from({ length: 5000 }, () => uuid7(ms + 10));
    const ids = [...later, ...Array.from({ length: 10 }, () => uuid7(ms))];
    expect(parseInt(later[0]?.replaceAll("-", "").slice(0, 12) ?? "", 16)).toBe(ms + 10);
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it("when Retry-After is given, then seconds and HTTP dates are read and the wait never undercuts it", () => {
    expect(parseRetryAfter("5")).toBe(5000);
    expect(parseRetryAfter("Wed, 21 Oct 2015 07:28:10 GMT", Date.parse("2015-10-21T07:28:00Z"))).toBe(10_000);
    expect(parseRetryAfter("soon")).toBeUndefined();
    const top = () => 0.999999;
    expect(retryDelay(1, undefined, 200, 30_000, top)).toBe(199);
    expect(retryDelay(3, undefined, 200, 30_000, top)).toBe(799);
    expect(retryDelay(20, undefined, 200, 30_000, top)).toBe(29_999);
    expect(retryDelay(1, 2000, 200, 30_000, () => 0)).toBe(2000);
    expect(retryDelay(1, 2000, 200, 30_000, top)).toBeLessThanOrEqual(2200);
  });

  it.each([
    [202, '{"accepted":3,"duplicates":2}', "delivered"],
    [503, '{"code":"database_unavailable"}', "retry"],
    [429, '{"code":"rate_limited"}', "retry"],
    [502, "bad gateway", "retry"],
    [413, '{"code":"body_too_large"}', "too-large"],
    [401, '{"code":"unauthorized"}', "refused-all"],
    [403, '{"code":"customer_not_allowed"}', "refused-all"],
    [400, '{"code":"invalid_events","errors":[{"field":"events","message":"not an array"}]}', "refused-all"],
    [
      422,
      '{"code":"events_rejected","errors":[{"index":1,"field":"events[1].meter","message":"unknown"}]}',
      "refused-some",
    ],
  ])("when Tally answers %i %s, then the batch is %s", (status, body, kind) => {
    expect(classify(status, body, null, 5).kind).toBe(kind);
  });

  it("when a batch is large, then it goes as gzip NDJSON; small ones as JSON", async () => {
    const lines = ['{"id":"a"}', '{"id":"b"}'];
    const small = await encodeBatch(lines, 22, 1000);
    expect(JSON.parse(small.body as string)).toEqual({ events: [{ id: "a" }, { id: "b" }] });
    const large = await encodeBatch(lines, 22, 10);
    expect(large.headers).toEqual({ "Content-Type": "application/x-ndjson", "Content-Encoding": "gzip" });
    expect(gunzipSync(large.body as Buffer).toString()).toBe(lines.join("\n"));
  });

  it("when options are out of range, then the constructor says which", () => {
    expect(() => new TallyClient({ url: "http://127.0.0.1:9", apiKey: "k", maxBatchEvents: 0 })).toThrow(
      /maxBatchEvents/,
    );
  });

  it("when the client's sources are read, then they import only Node, Express's types and each other (installable alone)", () => {
    const dir = join(import.meta.dirname, "..", "clients", "typescript", "src");
    const files = readdirSync(dir, { recursive: true }).filter((f): f is string => String(f).endsWith(".ts"));
    const outside = files.flatMap((f) =>
      [...readFileSync(join(dir, f), "utf8").matchAll(/^(?:import|export)\s[^;]*?from\s+"([^"]+)"/gms)]
        .map((m) => m[1] as string)
        .filter((spec) => !spec.startsWith("node:") && spec !== "express" && !/^\.\/[\w/]+\.js$/.test(spec))
        .map((spec) => `${f} → ${spec}`),
    );
    expect(outside).toEqual([]);
  });

  it("when the OpenAPI document changes, then the committed client types are regenerated (npm run types:api)", async () => {
    expect(readFileSync(CLIENT_TYPES_PATH, "utf8") === (await clientTypes()), "run npm run types:api").toBe(true);
  });
});

describe("TypeScript client: against Tally (embedded engine)", () => {
  let t: TestTally;
  let url: string;

  beforeAll(async () => {
    t = await startTestTally("embedded");
    url = await t.tally.listen(0, "127.0.0.1");
    await defineMeters(t.tally, { api_calls: "sum" });
  });
  afterAll(async () => {
    await t?.close();
  });

  it("when events are tracked and flushed, then the typed reads find them (receipt, usage, summary, entitlement, credits, invoices)", async () => {
    const client = new TallyClient({ url, apiKey: ADMIN_KEY });
    const at = new Date(Date.now() - 60_000);
    const ids = [
      await client.track({ customer: "reads-1", meter: "api_calls", value: 2, timestamp: at }),
      await client.track({ customer: "reads-1", meter: "api_calls", value: "3.5", properties: { route: "/x" } }),
    ];
    await client.flush();
    expect(client.metrics()).toMatchObject({ sent: 2, buffered: 0, rejected: 0 });
    const receipt = await client.receipt("reads-1", ids[0] as string);
    expect(receipt).toMatchObject({ id: ids[0], meter: "api_calls", value: "2", timestamp: at.toISOString() });
    expect(await client.receipt("reads-1", "never-sent")).toBeNull();
    const hour = new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000);
    const usage = await client.usage({
      customer: "reads-1",
      meter: "api_calls",
      granularity: "day",
      from: new Date(hour.getTime() - 86_400_000).toISOString(),
      to: new Date(hour.getTime() + 86_400_000).toISOString(),
    });
    expect(usage.data.reduce((s, b) => s + Number(b.value), 0)).toBe(5.5);
    const summary = await client.summary("reads-1");
    expect(summary.customer).toBe("reads-1");
    const entitlement = await client.entitlement("reads-1", "api_calls");
    expect(entitlement.allowed).toBe(true);
    expect((await client.credits("reads-1")).customer).toBe("reads-1");
    expect(await client.invoices({ customer: "reads-1" })).toEqual([]);
    await expect(client.summary("nobody-at-all")).rejects.toBeInstanceOf(TallyApiError);
    await client.close();
    await expect(client.track({ customer: "reads-1", meter: "api_calls" })).rejects.toBeInstanceOf(ClientClosedError);
  });

  it("when close() comes while a batch waits out a long backoff, then the wait is cut short and the batch delivered", async () => {
    const proxy = await startFaultProxy(url, []);
    proxy.override = { action: "drop_before" };
    let waiting = false;
    // A first wait of up to 60 s: without the cut, close(5000) would almost always miss its deadline.
    const client = new TallyClient({
      url: proxy.url,
      apiKey: ADMIN_KEY,
      retryBaseMs: 60_000,
      retryMaxMs: 60_000,
      maxBatchEvents: 2,
      onRetry: () => {
        waiting = true;
      },
    });
    try {
      await client.track({ customer: "hurry", meter: "api_calls" });
      await client.track({ customer: "hurry", meter: "api_calls" });
      await eventually(() => expect(waiting).toBe(true));
      proxy.override = undefined;
      const started = Date.now();
      await client.close(5000);
      expect(Date.now() - started).toBeLessThan(5000);
      expect(client.metrics()).toMatchObject({ sent: 2, buffered: 0 });
    } finally {
      await proxy.close();
    }
  });

  it("when Tally cannot be reached, then flush() rejects by its deadline, names what is held, and delivery goes on", async () => {
    const client = new TallyClient({ url: "http://127.0.0.1:9", apiKey: ADMIN_KEY, retryBaseMs: 10, retryMaxMs: 50 });
    await client.track({ customer: "nowhere", meter: "api_calls" });
    const err = await client.flush(200).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeliveryError);
    expect((err as DeliveryError).undelivered).toHaveLength(1);
    expect(client.metrics().retried).toBeGreaterThan(0);
    const closed = await client.close(100).catch((e: unknown) => e);
    expect((closed as DeliveryError).undelivered.map((e) => e.customer)).toEqual(["nowhere"]);
  });

  it("when close() comes while a track() waits for room, then that track() fails (its event was never buffered)", async () => {
    const client = new TallyClient({
      url: "http://127.0.0.1:9",
      apiKey: ADMIN_KEY,
      maxBufferedEvents: 1,
      retryBaseMs: 10,
    });
    await client.track({ customer: "full", meter: "api_calls", id: "in-buffer" });
    // Its outcome is taken at once: close() rejects it before this test awaits it.
    const waiting = client.track({ customer: "full", meter: "api_calls", id: "waiting" }).then(
      () => undefined,
      (e: unknown) => e,
    );
    const closed = await client.close(100).catch((e: unknown) => e);
    expect((closed as DeliveryError).undelivered.map((e) => e.id)).toEqual(["in-buffer"]);
    expect(await waiting).toBeInstanceOf(ClientClosedError);
  });
});
