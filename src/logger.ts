// JSON logs (pino). Secrets never reach a log line: authorization headers and key fields are redacted.
import { type DestinationStream, type Logger, pino } from "pino";

export type { Logger };

let stdoutFailed = false;
let stdioGuarded = false;

/**
 * Logging never blocks or ends the process. pino's default destination (sonic-boom) flushes synchronously on exit
 * and retries a failed write forever: with stdout a pipe whose reader is gone (EPIPE), `process.exit` never
 * returned. process.stdout instead writes pipes and sockets asynchronously (files and terminals synchronously),
 * reports a failure as an 'error' event, and drops what is still queued at exit. Once stdout has failed (the
 * reader is gone), log lines are dropped.
 */
const stdoutDestination: DestinationStream = {
  write(line: string) {
    if (!stdoutFailed) process.stdout.write(line);
  },
};

/** An 'error' on stdout or stderr (EPIPE: the reader went away) is nothing to wait for, and never a crash. */
function guardStdio(): void {
  if (stdioGuarded) return;
  stdioGuarded = true;
  process.stdout.on("error", (err: NodeJS.ErrnoException) => {
    if (stdoutFailed) return;
    stdoutFailed = true;
    if (err.code !== "EPIPE")
      process.stderr.write(`tally: stdout failed (${err.code ?? err.message}); logging stops\n`);
  });
  process.stderr.on("error", () => {});
}

/** Logs to stdout, or to `destination` (tests read what would have been written). */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { service: "tally" },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: {
      paths: ["key", "*.key", "authorization", "*.authorization", "headers.authorization", "secret", "*.secret"],
      censor: "[redacted]",
    },
  };
  if (destination) return pino(options, destination);
  guardStdio();
  return pino(options, stdoutDestination);
}
