// A test's own Tally: a fresh database on one engine and a manual clock of its own, closed when the test ends, with
// the HTTP calls tests make of it. Tests that build their state this way share nothing and can run in any order.
import request from "supertest";
import { expect, onTestFinished } from "vitest";
import { ManualClock } from "../../src/clock.js";
import type { TestBackend } from "./databases.js";
import { postJson } from "./events.js";
import { admin, startTestTally, type TestTally } from "./tally.js";

type Response = { status: number; body: unknown; text: string };

/** HTTP calls on a Tally as the admin, each asserting its status (with the body in the message). */
export function adminCalls(t: TestTally) {
  let seq = 0;
  const api = () => request(t.tally.app);
  const ok = async <R extends Response>(p: PromiseLike<R>, status = 200): Promise<R> => {
    const res = await p;
    expect(res.status, JSON.stringify(res.body)).toBe(status);
    return res;
  };
  /** A PUT that creates or updates (201 or 200). */
  const setup = async (path: string, body: object) => {
    const res = await api().put(path).set(admin).send(body);
    expect(res.status, `PUT ${path}: ${JSON.stringify(res.body)}`).toBeLessThan(300);
    return res.body;
  };
  const post = (path: string, body: object = {}) => api().post(path).set(admin).send(body);
  // biome-ignore lint/suspicious/noExplicitAny: test bodies are read field by field and compared with toMatchObject
  const get = async (path: string, query: Record<string, string> = {}): Promise<any> =>
    (await ok(api().get(path).query(query).set(admin))).body;
  /** Events posted as one batch (202); an event without an id gets a fresh one. */
  const ingest = async (events: object[]) => {
    const res = await postJson(
      t.tally,
      events.map((e) => ({ id: `e${++seq}`, ...e })),
    );
    expect(res.status, JSON.stringify(res.body)).toBe(202);
  };
  /** Runs a job now through the API and answers its summary. */
  // biome-ignore lint/suspicious/noExplicitAny: each job's summary has its own fields
  const runJob = async (job: string): Promise<any> => (await ok(post(`/v1/jobs/${job}/run`))).body.summary;
  return { api, ok, setup, post, get, ingest, runJob };
}

export type AdminCalls = ReturnType<typeof adminCalls>;

/** A Tally of the running test's own, on `backend`, with its clock at `now`; closed when the test finishes. */
export async function ownTally(
  backend: TestBackend,
  now: string,
  opts: { env?: Record<string, string> } = {},
): Promise<AdminCalls & { t: TestTally; clock: ManualClock }> {
  const clock = new ManualClock(now);
  const t = await startTestTally(backend, { clock, ...opts });
  onTestFinished(() => t.close());
  return { t, clock, ...adminCalls(t) };
}
