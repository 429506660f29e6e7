// `npm start`: read the configuration, start Tally, stop gracefully on SIGTERM/SIGINT.
import { ConfigError, loadConfig } from "./config.js";
import { createLogger } from "./logger.js";
import { createTally } from "./tally.js";

async function main(): Promise<void> {
  let config: ReturnType<typeof loadConfig>;
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
  const tally = await createTally({ config, logger: log });
  // Signal handlers before the server listens: whoever sees "listening" may stop it at once, gracefully.
  let signals = 0;
  const stop = (signal: string) => {
    signals += 1;
    if (signals > 1) {
      log.warn({ signal }, "second signal: exiting without finishing the shutdown");
      process.exit(1);
    }
    log.info({ signal }, "signal received");
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
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  const url = await tally.listen();
  // What it listens on, as configured (HOST), and a URL that reaches it from this machine: not the same thing when
  // HOST is 0.0.0.0 (the default) or ::, which is every network interface.
  const everywhere = config.HOST === "0.0.0.0" || config.HOST === "::";
  const listening = `http://${config.HOST.includes(":") ? `[${config.HOST}]` : config.HOST}:${new URL(url).port}`;
  log.info(
    { listening, url, engine: tally.ctx.engine, pid: process.pid },
    everywhere
      ? `Tally listening on ${listening} (every network interface), reachable here at ${url}`
      : `Tally listening on ${listening}`,
  );
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
