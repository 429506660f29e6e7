// JSON logs (pino). Secrets never reach a log line: authorization headers and key fields are redacted.
import { type DestinationStream, type Logger, pino } from "pino";

export type { Logger };

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
  return destination ? pino(options, destination) : pino(options);
}
