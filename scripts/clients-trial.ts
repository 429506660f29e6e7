// npm run try:clients — the clients tried as a new user would: the example Express service
// (clients/examples/express-service.ts) and the example Python script (clients/examples/send_usage.py) send usage
// to a real Tally (npm start's embedded engine, as a child process) through a proxy while Tally is restarted, then
// answers 503 and 429 for a while. After the service's close() on SIGTERM and the script's close(), every event id
// they reported must have a receipt, and Tally must hold exactly as many events as ids: nothing lost, nothing
// doubled. TRIAL_SECONDS (24) is the length of the run; the Python part is skipped, and said so, without python3.
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { findPython, PYTHON } from "../test/helpers/conformance.js";
import { startFaultProxy } from "../test/helpers/faultProxy.js";
import { spawnTally, type TallyProcess } from "../test/helpers/process.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const KEY = "trial-admin-key-0123456789abcdef";
const SECONDS = Number(process.env.TRIAL_SECONDS ?? 24);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (msg: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${msg}`);

function lines(child: ChildProcess, onLine: (line: string) => void): void {
  let rest = "";
  child.stdout?.on("data", (d) => {
    const parts = (rest + d).split("\n");
    rest = parts.pop() ?? "";
    for (const p of parts) onLine(p);
  });
}

async function receipts(base: string, customer: string, ids: string[]): Promise<{ missing: string[]; stored: number }> {
  const missing: string[] = [];
  for (const id of ids) {
    const res = await fetch(`${base}/v1/events/${customer}/${id}`, { headers: { Authorization: `Bearer ${KEY}` } });
    if (res.status !== 200) missing.push(id);
  }
  const from = new Date(Date.now() - 86_400_000).toISOString().slice(0, 13);
  const to = new Date(Date.now() + 86_400_000).toISOString().slice(0, 13);
  const q = `customer=${customer}&meter=api_calls&granularity=hour&from=${from}:00:00Z&to=${to}:00:00Z`;
  const usage = (await (
    await fetch(`${base}/v1/usage?${q}`, { headers: { Authorization: `Bearer ${KEY}` } })
  ).json()) as {
    data: { count: number }[];
  };
  return { missing, stored: usage.data.reduce((s, b) => s + b.count, 0) };
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "tally-trial-"));
  const env = { TALLY_DATA_DIR: dir, TALLY_ADMIN_KEY: KEY, LOG_LEVEL: "warn" };
  let tally: TallyProcess = await spawnTally(env);
  const port = new URL(tally.url).port;
  log(`Tally at ${tally.url}`);
  await fetch(`${tally.url}/v1/meters/api_calls`, {
    method: "PUT",
    headers: { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json" },
    body: JSON.stringify({ name: "API calls", unit: "call", aggregation: "sum" }),
  });
  const proxy = await startFaultProxy(tally.url, []);
  const clientEnv = { ...process.env, TALLY_URL: proxy.url, TALLY_KEY: KEY };

  const service = spawn(process.execPath, ["--import", "tsx", "clients/examples/express-service.ts"], {
    cwd: ROOT,
    env: { ...clientEnv, PORT: "0" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const serviceOut: string[] = [];
  const serviceUrl = await new Promise<string>((resolve) =>
    lines(service, (l) => {
      serviceOut.push(l);
      const m = /listening on (\S+)/.exec(l);
      if (m?.[1]) resolve(m[1]);
    }),
  );
  log(`Express service at ${serviceUrl}`);

  const python = findPython();
  const pyIds: string[] = [];
  let pyDone: Promise<number | null> = Promise.resolve(0);
  if ("python" in python) {
    const py = spawn(
      PYTHON,
      [
        "clients/examples/send_usage.py",
        "--customer",
        "trial-py",
        "--events",
        String(SECONDS * 20),
        "--seconds",
        String(SECONDS),
      ],
      {
        cwd: ROOT,
        env: clientEnv,
        stdio: ["ignore", "pipe", "inherit"],
      },
    );
    lines(py, (l) => {
      const parsed = JSON.parse(l) as { id?: string; closed?: unknown };
      if (parsed.id) pyIds.push(parsed.id);
      else log(`Python script closed: ${JSON.stringify(parsed.closed)}`);
    });
    pyDone = once(py, "exit").then(([code]) => code as number | null);
  } else log(`${python.missing}: the Python script is skipped`);

  // The Express service gets ~25 requests/s for the whole run.
  const tsIds: string[] = [];
  let driving = true;
  const driver = (async () => {
    while (driving) {
      const res = await fetch(`${serviceUrl}/work`, { headers: { "x-customer": "trial-ts" } });
      if (res.status === 200) tsIds.push(((await res.json()) as { id: string }).id);
      await sleep(40);
    }
  })();

  const t = SECONDS / 6;
  await sleep(t * 1000);
  log("restarting Tally (SIGTERM, then a new process on the same port and data)");
  await tally.stop();
  tally = await spawnTally({ ...env, PORT: port });
  log(`Tally back at ${tally.url}`);
  await sleep(t * 1000);
  log("Tally answers 503 (Retry-After: 1) to every batch");
  proxy.override = { action: "respond", status: 503, retry_after: "1" };
  await sleep(t * 1000);
  log("Tally answers 429 (Retry-After: 2) to every batch");
  proxy.override = { action: "respond", status: 429, retry_after: "2" };
  await sleep(t * 1000);
  proxy.override = undefined;
  log("Tally answers again");
  await sleep(t * 1000);
  driving = false;
  await driver;
  service.kill("SIGTERM");
  const [serviceCode] = await once(service, "exit");
  log(`Express service exited (${serviceCode}): ${serviceOut.filter((l) => l.startsWith("closed")).join(" ")}`);
  const pyCode = await pyDone;

  const ts = await receipts(tally.url, "trial-ts", tsIds);
  const py = await receipts(tally.url, "trial-py", pyIds);
  const faults = proxy.log.filter((r) => r.action !== "forward" || (r.status ?? 0) >= 500).length;
  console.log(
    `\nExpress service: ${tsIds.length} ids, ${tsIds.length - ts.missing.length} with a receipt, ${ts.stored} stored` +
      `\nPython script:   ${pyIds.length} ids, ${pyIds.length - py.missing.length} with a receipt, ${py.stored} stored` +
      `\n${proxy.log.length} ingest requests through the proxy, ${faults} of them refused, failed or unanswered`,
  );
  const ok =
    serviceCode === 0 &&
    pyCode === 0 &&
    ts.missing.length === 0 &&
    py.missing.length === 0 &&
    ts.stored === tsIds.length &&
    py.stored === pyIds.length;
  console.log(ok ? "every event stored exactly once" : "FAILED");
  await proxy.close();
  await tally.stop();
  await rm(dir, { recursive: true, force: true });
  process.exit(ok ? 0 : 1);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
