// Building and posting event batches in tests.
import { gzipSync } from "node:zlib";
import request from "supertest";
import type { Tally } from "../../src/tally.js";
import { admin } from "./tally.js";

export interface TestEvent {
  id: string;
  customer: string;
  meter: string;
  value?: number | string;
  timestamp?: string;
  properties?: Record<string, string>;
}

export const postJson = (tally: Tally, events: unknown[], headers: Record<string, string> = admin) =>
  request(tally.app).post("/v1/events").set(headers).send({ events });

export const ndjson = (events: unknown[]) => `${events.map((e) => JSON.stringify(e)).join("\n")}\n`;

export const postNdjson = (
  tally: Tally,
  body: string | Buffer,
  opts: { gzip?: boolean; headers?: Record<string, string> } = {},
) => {
  let req = request(tally.app)
    .post("/v1/events")
    .set(opts.headers ?? admin)
    .set("Content-Type", "application/x-ndjson");
  let payload: string | Buffer = body;
  if (opts.gzip) {
    req = req.set("Content-Encoding", "gzip");
    payload = gzipSync(body);
  }
  return req.send(payload);
};

export async function defineMeters(
  tally: Tally,
  meters: Record<string, "sum" | "count" | "max" | "last" | "min" | "avg">,
) {
  for (const [key, aggregation] of Object.entries(meters)) {
    const res = await request(tally.app)
      .put(`/v1/meters/${key}`)
      .set(admin)
      .send({ name: key, unit: "unit", aggregation });
    if (res.status >= 300) throw new Error(`meter ${key}: ${res.status} ${JSON.stringify(res.body)}`);
  }
}

export async function storedCount(tally: Tally, where = "TRUE", params: unknown[] = []): Promise<number> {
  const { rows } = await tally.ctx.db.query<{ n: string }>(
    `SELECT count(*) AS n FROM usage_events WHERE ${where}`,
    params,
  );
  return Number(rows[0]?.n);
}

export const isoMinutesAgo = (minutes: number, from = Date.now()) => new Date(from - minutes * 60_000).toISOString();

/** Posts bytes as they are (supertest would JSON-serialize a Buffer sent as application/json). */
export const postRaw = (tally: Tally, headers: Record<string, string>, body: string | Buffer) =>
  request(tally.app)
    .post("/v1/events")
    .set({ ...admin, ...headers })
    .serialize((b: unknown) => b as string)
    .send(body as string);
