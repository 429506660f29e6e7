// JSON logs (pino). Secrets never reach a log line: authorization headers and key fields are redacted.
import { type Logger, pino } from "pino";

export type { Logger };

export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { service: "tally" },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: {
      paths: ["key", "*.key", "authorization", "*.authorization", "headers.authorization", "secret", "*.secret"],
      censor: "[redacted]",
    },
  });
}
