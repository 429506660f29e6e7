// Renders errors as RFC 9457 problem+json (the errors themselves live in src/errors.ts).
import type { ErrorRequestHandler, Response } from "express";
import { AppError } from "../errors.js";
import type { Logger } from "../logger.js";

const TITLES: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  409: "Conflict",
  411: "Length Required",
  413: "Content Too Large",
  415: "Unsupported Media Type",
  422: "Unprocessable Content",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  503: "Service Unavailable",
};

export const problemTitle = (status: number): string => TITLES[status] ?? "Error";

export function sendProblem(
  res: Response,
  status: number,
  code: string,
  detail: string,
  extra: Record<string, unknown> = {},
): void {
  res
    .status(status)
    .type("application/problem+json")
    .send(
      JSON.stringify({
        type: `urn:tally:problem:${code}`,
        title: problemTitle(status),
        status,
        detail,
        code,
        ...extra,
      }),
    );
}

/** PostgreSQL and socket errors that mean "the database is not there right now", not "bad input". */
function isDatabaseUnavailable(err: unknown): boolean {
  const e = err as { code?: string; message?: string } | undefined;
  if (!e) return false;
  if (typeof e.code === "string") {
    if (["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "ENOTFOUND", "EAI_AGAIN"].includes(e.code)) return true;
    // 08: connection exception; 57P01..57P03: admin shutdown, crash shutdown, cannot connect now; 53300: too many connections
    if (/^(08...|57P0[123]|53300)$/.test(e.code)) return true;
  }
  const m = e.message ?? "";
  // "PGlite is closed": the embedded database during shutdown.
  return /Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error|Cannot use a pool after calling end|PGlite is closed/i.test(
    m,
  );
}

/** PostgreSQL errors caused by the data sent (should have been caught by validation, but never a 500). */
function isDataError(err: unknown): boolean {
  const code = (err as { code?: string } | undefined)?.code;
  return typeof code === "string" && /^(22...|23514)$/.test(code);
}

export function errorHandler(log: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    if (res.headersSent) {
      req.socket.destroy();
      return;
    }
    // Refused before its body was read (401, 403, 429, 413...): Node would otherwise read and discard the rest of
    // the body — up to the NDJSON limit — to keep the connection; closing it sheds that load.
    if (!req.complete) res.setHeader("Connection", "close");
    if (err instanceof AppError) {
      for (const [k, v] of Object.entries(err.options.headers ?? {})) res.setHeader(k, v);
      const extra: Record<string, unknown> = { ...err.options.extra };
      if (err.options.errors) extra.errors = err.options.errors;
      sendProblem(res, err.status, err.code, err.message, extra);
      return;
    }
    // body-parser's errors carry an HTTP status and a type.
    const bodyErr = err as { status?: number; type?: string; message?: string };
    if (typeof bodyErr.status === "number" && bodyErr.status >= 400 && bodyErr.status < 500) {
      const code =
        bodyErr.type === "entity.too.large"
          ? "body_too_large"
          : bodyErr.type === "entity.parse.failed"
            ? "malformed_json"
            : bodyErr.type === "encoding.unsupported"
              ? "unsupported_content_encoding"
              : bodyErr.type === "charset.unsupported"
                ? "unsupported_charset"
                : // Express's router: a path segment whose % escapes do not decode (e.g. %zz, %E0%A4%A)
                  /^Failed to decode param/.test(bodyErr.message ?? "")
                  ? "malformed_path"
                  : "bad_request";
      const status = bodyErr.type === "encoding.unsupported" ? 415 : bodyErr.status;
      sendProblem(
        res,
        status,
        code,
        bodyErr.type === "entity.parse.failed" ? "the body is not valid JSON" : String(bodyErr.message),
      );
      return;
    }
    if (isDatabaseUnavailable(err)) {
      log.warn(
        { err: { message: (err as Error).message, code: (err as { code?: string }).code } },
        "database unavailable",
      );
      res.setHeader("Retry-After", "5");
      sendProblem(res, 503, "database_unavailable", "the database is not answering; retry shortly");
      return;
    }
    if (isDataError(err)) {
      sendProblem(res, 422, "invalid_value", `a value was rejected by the database: ${(err as Error).message}`);
      return;
    }
    log.error({ err }, "unhandled error");
    sendProblem(res, 500, "internal_error", "an unexpected error occurred; it has been logged");
  };
}
