// Several HTTP workers on one port (node:cluster, TALLY_WORKERS > 1). The primary process applies the migrations, runs
// the jobs (the workers run none, so each schedule has one scheduler) and supervises: a worker that dies is logged and
// restarted with backoff, and SIGTERM drains every worker. /metrics, whichever worker answers it, is everyone's
// metrics added up by the primary.
import cluster, { type Worker } from "node:cluster";
import { AggregatorRegistry, type Registry } from "prom-client";
import { backoffMs } from "./backoff.js";
import type { Config } from "./config.js";
import type { Logger } from "./logger.js";
import { createTally, listeningLine, type Tally } from "./tally.js";

type Message =
  /** worker → primary: it hears messages now (one sent before would be lost). */
  | { type: "tally:hello" }
  | { type: "tally:listening"; url: string }
  | { type: "tally:shutdown" }
  /** worker → primary: the metrics of all, please; primary → worker: here they are. */
  | { type: "tally:metrics-ask"; id: number }
  | { type: "tally:metrics-text"; id: number; text: string }
  /** primary → worker: your own metrics; worker → primary: as JSON, to be added up. */
  | { type: "tally:metrics-collect"; id: number }
  | { type: "tally:metrics-json"; id: number; metrics: object[] };

const isMessage = (m: unknown): m is Message =>
  typeof m === "object" && m !== null && String((m as { type?: unknown }).type).startsWith("tally:");

/** A worker that ran less than this before dying counts as a crash loop: its restart waits longer each time. */
const STEADY_MS = 30_000;
const RESTART_BACKOFF = { baseMs: 500, capMs: 30_000, jitter: 0.2 };
const METRICS_TIMEOUT_MS = 3_000;

/** The worker's end: tells the primary it listens, answers its metrics requests, and hears the shutdown. */
export class WorkerLink {
  readonly id = String(cluster.worker?.id ?? 0);
  #registry: Registry | undefined;
  #asked = 0;
  readonly #answers = new Map<number, (text: string) => void>();
  /** Until serve(): a shutdown that arrives while the worker starts is kept for then. */
  #onShutdown: () => void = () => {
    this.#shutdownAsked = true;
  };
  #shutdownAsked = false;

  constructor() {
    process.on("message", (m: unknown) => {
      if (!isMessage(m)) return;
      if (m.type === "tally:shutdown") this.#onShutdown();
      else if (m.type === "tally:metrics-text") this.#answers.get(m.id)?.(m.text);
      else if (m.type === "tally:metrics-collect" && this.#registry)
        void this.#registry
          .getMetricsAsJSON()
          .then((metrics) => send({ type: "tally:metrics-json", id: m.id, metrics }));
    });
    send({ type: "tally:hello" });
  }

  /** Starts answering the primary; `onShutdown` runs when the primary drains the workers. */
  serve(registry: Registry, onShutdown: () => void): void {
    this.#registry = registry;
    this.#onShutdown = onShutdown;
    if (this.#shutdownAsked) onShutdown();
  }

  listening(url: string): void {
    send({ type: "tally:listening", url });
  }

  /** Every process's metrics added up (by the primary); this worker's own if the primary does not answer. */
  async allMetrics(): Promise<string> {
    const id = ++this.#asked;
    const text = await new Promise<string | undefined>((resolve) => {
      const timer = setTimeout(() => resolve(undefined), METRICS_TIMEOUT_MS);
      this.#answers.set(id, (t) => {
        clearTimeout(timer);
        resolve(t);
      });
      send({ type: "tally:metrics-ask", id });
    });
    this.#answers.delete(id);
    return text ?? (await (this.#registry as Registry).metrics());
  }
}

function send(m: Message): void {
  if (process.connected) process.send?.(m);
}

/**
 * The primary: Tally without an HTTP port (migrations, the admin key, the jobs), then `TALLY_WORKERS` workers that
 * serve HTTP with TALLY_JOBS=off. Resolves when it has started; the process ends on SIGTERM/SIGINT.
 */
export async function runPrimary(config: Config, log: Logger): Promise<void> {
  const tally = await createTally({ config, logger: log });
  tally.startJobs();
  const supervisor = new Supervisor(config, log, tally.ctx.metrics.registry);
  // Signal handlers before the workers start: a SIGTERM during the start drains what has started.
  onSignals(config, log, supervisor, tally);
  const url = await supervisor.start();
  if (supervisor.stopping) return;
  const keyNotice = tally.createdAdminKey
    ? `\nAn admin API key was created. It is shown only this once; keep it safe:\n\n  ${tally.createdAdminKey}\n`
    : "";
  const { listening, message } = listeningLine(config.HOST, url);
  log.info({ listening, url, engine: tally.ctx.engine, workers: config.TALLY_WORKERS }, message);
  process.stdout.write(
    `${keyNotice}\nTally is running at ${url} (engine: ${tally.ctx.engine}, ${config.TALLY_WORKERS} workers)\n\n`,
  );
}

function onSignals(config: Config, log: Logger, supervisor: Supervisor, tally: Tally): void {
  let signals = 0;
  const stop = (signal: string) => {
    signals += 1;
    if (signals > 1) {
      log.warn({ signal }, "second signal: stopping the workers at once");
      supervisor.kill();
      process.exit(1);
    }
    log.info({ signal }, "signal received: draining the workers");
    setTimeout(() => {
      log.error({ timeout_ms: config.TALLY_SHUTDOWN_TIMEOUT }, "shutdown did not finish within TALLY_SHUTDOWN_TIMEOUT");
      supervisor.kill();
      process.exit(1);
    }, config.TALLY_SHUTDOWN_TIMEOUT).unref();
    Promise.all([supervisor.drain(), tally.shutdown()]).then(
      ([clean]) => process.exit(clean ? 0 : 1),
      (err) => {
        log.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}

class Supervisor {
  #stopping = false;
  /** Workers that said hello: they hear messages. */
  readonly #hearing = new Set<number>();
  /** Workers that died soon after their start, one after the other. */
  #crashes = 0;
  readonly #started = new Map<number, number>();
  readonly #restarts = new Set<NodeJS.Timeout>();
  #collecting = 0;
  readonly #collections = new Map<number, { pending: Set<number>; parts: object[]; done: () => void }>();

  constructor(
    private readonly config: Config,
    private readonly log: Logger,
    private readonly registry: Registry,
  ) {}

  /** Forks the workers; resolves with the URL once each of them listens. */
  start(): Promise<string> {
    cluster.on("exit", (worker, code, signal) => this.#exited(worker, code, signal));
    return new Promise((resolve) => {
      const listening = new Set<number>();
      cluster.on("message", (worker, m: unknown) => {
        if (!isMessage(m)) return;
        if (m.type === "tally:hello") {
          this.#hearing.add(worker.id);
          // Forked before the shutdown, it starts after it: it is told now.
          if (this.#stopping) worker.send({ type: "tally:shutdown" } satisfies Message);
        } else if (m.type === "tally:listening") {
          this.log.info({ worker: String(worker.id), pid: worker.process.pid, url: m.url }, "worker listening");
          listening.add(worker.id);
          if (listening.size === this.config.TALLY_WORKERS) resolve(m.url);
        } else if (m.type === "tally:metrics-ask") void this.#answerMetrics(worker, m.id);
        else if (m.type === "tally:metrics-json") this.#collected(worker, m.id, m.metrics);
      });
      for (let i = 0; i < this.config.TALLY_WORKERS; i++) this.#fork();
    });
  }

  #fork(): void {
    const worker = cluster.fork({ TALLY_JOBS: "off" });
    this.#started.set(worker.id, Date.now());
  }

  #exited(worker: Worker, code: number | null, signal: string | null): void {
    const ranMs = Date.now() - (this.#started.get(worker.id) ?? Date.now());
    this.#started.delete(worker.id);
    this.#hearing.delete(worker.id);
    for (const c of this.#collections.values()) c.pending.delete(worker.id);
    for (const c of [...this.#collections.values()]) if (c.pending.size === 0) c.done();
    if (this.#stopping) {
      this.log.info({ worker: String(worker.id), pid: worker.process.pid, code, signal }, "worker stopped");
      return;
    }
    this.#crashes = ranMs < STEADY_MS ? this.#crashes + 1 : 0;
    const delay = backoffMs(this.#crashes - 1, RESTART_BACKOFF);
    this.log.error(
      { worker: String(worker.id), pid: worker.process.pid, code, signal, ran_ms: ranMs, restart_in_ms: delay },
      "worker died: restarting it",
    );
    const timer = setTimeout(() => {
      this.#restarts.delete(timer);
      if (!this.#stopping) this.#fork();
    }, delay);
    this.#restarts.add(timer);
  }

  /** Asks every worker to finish its requests and stop; resolves true when all exited 0. */
  async drain(): Promise<boolean> {
    this.#stopping = true;
    for (const t of this.#restarts) clearTimeout(t);
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);
    const codes = workers.map(
      (w) => new Promise<number | null>((resolve) => w.once("exit", (code: number | null) => resolve(code))),
    );
    // The others are told when they say hello.
    for (const w of workers) if (this.#hearing.has(w.id)) w.send({ type: "tally:shutdown" } satisfies Message);
    return (await Promise.all(codes)).every((c) => c === 0);
  }

  get stopping(): boolean {
    return this.#stopping;
  }

  kill(): void {
    this.#stopping = true;
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill("SIGKILL");
  }

  /** Collects every worker's metrics (those that answer within the timeout) and the primary's, added up. */
  async #answerMetrics(asker: Worker, askId: number): Promise<void> {
    const id = ++this.#collecting;
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w?.isConnected() === true);
    const parts: object[] = [await this.registry.getMetricsAsJSON()];
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => done(), METRICS_TIMEOUT_MS - 500);
      const done = () => {
        clearTimeout(timer);
        this.#collections.delete(id);
        resolve();
      };
      this.#collections.set(id, { pending: new Set(workers.map((w) => w.id)), parts, done });
      for (const w of workers) w.send({ type: "tally:metrics-collect", id } satisfies Message);
    });
    const text = await AggregatorRegistry.aggregate(parts).metrics();
    if (asker.isConnected()) asker.send({ type: "tally:metrics-text", id: askId, text } satisfies Message);
  }

  #collected(worker: Worker, id: number, metrics: object[]): void {
    const c = this.#collections.get(id);
    if (!c?.pending.delete(worker.id)) return;
    c.parts.push(metrics);
    if (c.pending.size === 0) c.done();
  }
}
