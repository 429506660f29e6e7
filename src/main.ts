// `npm start`: read the configuration, start Tally (one process, or with TALLY_WORKERS > 1 a primary and its HTTP
// workers), stop gracefully on SIGTERM/SIGINT.
import cluster from "node:cluster";
import { runPrimary, WorkerLink } from "./cluster.js";
import { type Config, ConfigError, loadConfig } from "./config.js";
import { createLogger, type Logger } from "./logger.js";
import { createTally, listeningLine } from "./tally.js";

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`tally: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
  const log = createLogger(config.LOG_LEVEL);
  if (cluster.isPrimary && config.TALLY_WORKERS > 1) return runPrimary(config, log);
  const link = cluster.isWorker ? new WorkerLink() : undefined;
  return serve(config, link ? log.child({ worker: link.id }) : log, link);
}

/** One process serving HTTP: the whole of Tally, or a cluster worker (no jobs; the primary prints the banner). */
async function serve(config: Config, log: Logger, link: WorkerLink | undefined): Promise<void> {
  const tally = await createTally({
    config,
    logger: log,
    worker: link && { id: link.id, metricsText: () => link.allMetrics() },
  });
  let stopping = false;
  const shutdown = () => {
    if (stopping) return;
    stopping = true;
    // Whatever the shutdown waits for (a request that never ends, a stuck job, the database), the process ends at
    // the deadline. Unref'd: the timer never keeps the process alive by itself.
    setTimeout(() => {
      log.error(
        { timeout_ms: config.TALLY_SHUTDOWN_TIMEOUT },
        "shutdown did not finish within TALLY_SHUTDOWN_TIMEOUT: exiting",
      );
      process.exit(1);
    }, config.TALLY_SHUTDOWN_TIMEOUT).unref();
    tally.shutdown().then(
      () => process.exit(0),
      (err) => {
        log.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  // Signal handlers before the server listens: whoever sees "listening" may stop it at once, gracefully.
  let signals = 0;
  const stop = (signal: string) => {
    signals += 1;
    if (signals > 1) {
      log.warn({ signal }, "second signal: exiting without finishing the shutdown");
      process.exit(1);
    }
    log.info({ signal }, "signal received");
    shutdown();
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  // A worker is drained by its primary's message (not a signal: a Ctrl-C reaches the workers and the primary at
  // once, and the primary's word must not count as a second signal).
  link?.serve(tally.ctx.metrics.registry, shutdown);
  const url = await tally.listen();
  if (link) {
    link.listening(url); // the primary logs it
    return;
  }
  const { listening, message, everywhere } = listeningLine(config.HOST, url);
  log.info({ listening, url, engine: tally.ctx.engine, pid: process.pid }, message);
  // Printed once, to the terminal only: keys never go through the logger.
  const keyNotice = tally.createdAdminKey
    ? `\nAn admin API key was created. It is shown only this once; keep it safe:\n\n  ${tally.createdAdminKey}\n`
    : "";
  const where = everywhere
    ? `It listens on every network interface (HOST=${config.HOST}); HOST=127.0.0.1 keeps it to this machine.\n`
    : "";
  process.stdout.write(`${keyNotice}\nTally is running at ${url} (engine: ${tally.ctx.engine})\n${where}\n`);
}

main().catch((err) => {
  process.stderr.write(`tally: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
