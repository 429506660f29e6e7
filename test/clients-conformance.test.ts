// The clients' conformance suite against a real Tally (embedded engine) behind a fault-injecting proxy: every
// scenario of clients/conformance/scenarios.json, for the TypeScript client and the Python client (sync and asyncio;
// skipped, and said so, without python3 ≥ 3.9). Each checks Tally's receipts and stored events: nothing lost,
// nothing doubled. The Python unit tests (clients/python/tests) run here too.
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  findPython,
  type RunnerInput,
  type RunnerOutput,
  runPython,
  runPythonScenario,
  runTypeScript,
  scenarioEvents,
  suite,
  verify,
} from "./helpers/conformance.js";
import { defineMeters, postJson } from "./helpers/events.js";
import { startFaultProxy } from "./helpers/faultProxy.js";
import { ADMIN_KEY, admin, startTestTally, type TestTally } from "./helpers/tally.js";

const python = findPython();
const runners: [string, (input: RunnerInput) => Promise<RunnerOutput>][] = [
  ["typescript", runTypeScript],
  ...("python" in python
    ? ([
        ["python sync", (i) => runPythonScenario("sync", i)],
        ["python asyncio", (i) => runPythonScenario("async", i)],
      ] as [string, (input: RunnerInput) => Promise<RunnerOutput>][])
    : []),
];

const slug = (s: string) => s.toLowerCase().replace(/[^a-z0-9]+/g, "-");

describe("client conformance (embedded engine)", () => {
  let t: TestTally;
  let base: string;

  beforeAll(async () => {
    t = await startTestTally("embedded");
    base = await t.tally.listen(0, "127.0.0.1");
    await defineMeters(t.tally, { [suite.meter]: "sum" });
  });
  afterAll(async () => {
    await t?.close();
  });

  const receipt = async (customer: string, id: string) =>
    (await fetch(`${base}/v1/events/${encodeURIComponent(customer)}/${encodeURIComponent(id)}`, { headers: admin }))
      .status;

  describe.each(runners)("%s client", (language, run) => {
    it.each(suite.scenarios.map((s) => [s.name, s] as const))("%s", async (_name, s) => {
      const customer = `conf-${slug(language)}-${slug(s.name)}-${randomBytes(3).toString("hex")}`;
      const events = scenarioEvents(s, customer, suite.meter);
      const prestore = (s.events.prestore ?? []).map((i) => events[i]);
      if (prestore.length > 0) expect((await postJson(t.tally, prestore)).status).toBe(202);
      const proxy = await startFaultProxy(base, s.server);
      try {
        const out = await run({
          url: proxy.url,
          api_key: ADMIN_KEY,
          options: { ...suite.defaults, ...s.client },
          events,
          await_sent: s.await_sent ?? null,
        });
        await verify(s, events, out, {
          tally: t.tally,
          log: proxy.log,
          customer,
          receipt: (id) => receipt(customer, id),
        });
      } finally {
        await proxy.close();
      }
    });
  });

  if ("missing" in python) {
    it(`${python.missing}: Python conformance skipped`, (ctx) => {
      console.warn(`${python.missing}: Python conformance skipped (the TypeScript client ran every scenario)`);
      ctx.skip();
    });
  } else {
    it("python: unit tests (python3 -m unittest discover clients/python/tests)", async () => {
      const r = await runPython(["-m", "unittest", "discover", "-s", "tests", "-t", "."]);
      expect(r.code, r.stderr).toBe(0);
    });
  }
});
