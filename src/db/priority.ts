// Acknowledged work first on the embedded engine's one connection. PGlite runs in this process and answers in
// microtasks, so a job's chain of statements never hands the event loop back: requests could not even be read
// until the job ended (the evaluate-limits job of 1,000 customers blocked ingest for 12 s). Work started by a job
// runs inside `inBackground`; the embedded database then lets it take the connection in slices: after
// BACKGROUND_SLICE_MS of background statements, the next one first lets the event loop run, then waits while
// requests use or wait for the connection (at most BACKGROUND_YIELD_MS, so a busy ingest slows the jobs down but
// never stops them). A server database has a pool of connections and ignores this.
import { AsyncLocalStorage } from "node:async_hooks";

const background = new AsyncLocalStorage<true>();

/** Runs `fn` (a job) as background work: its statements yield to requests on the embedded engine. */
export function inBackground<T>(fn: () => Promise<T>): Promise<T> {
  return background.run(true, fn);
}

const BACKGROUND_SLICE_MS = 100;
const BACKGROUND_YIELD_MS = 400;

/** The embedded database's gate: counts the requests' statements and holds background ones back while they wait. */
export class ForegroundFirst {
  #foreground = 0;
  #sliceStart = 0;
  #idle: (() => void)[] = [];

  /** Wraps one top-level statement, transaction or COPY. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (background.getStore()) {
      await this.#turn();
      return fn();
    }
    this.#foreground += 1;
    try {
      return await fn();
    } finally {
      this.#foreground -= 1;
      if (this.#foreground === 0) for (const wake of this.#idle.splice(0)) wake();
    }
  }

  async #turn(): Promise<void> {
    if (performance.now() - this.#sliceStart < BACKGROUND_SLICE_MS) return;
    // PGlite answers in microtasks: a job's chain of statements would never let the event loop read a request.
    await new Promise((resolve) => setImmediate(resolve));
    if (this.#foreground > 0) {
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => {
          this.#idle.splice(this.#idle.indexOf(wake) >>> 0, 1);
          resolve();
        }, BACKGROUND_YIELD_MS);
        this.#idle.push(wake);
      });
    }
    this.#sliceStart = performance.now();
  }
}
