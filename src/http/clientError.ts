// Requests Node's HTTP parser refuses before any route runs (headers too large, malformed request line or
// chunking): answered as problem+json with the security headers, like every other error, then the connection is
// closed. Node's default answer is a bare status line without a body.
import type { Duplex } from "node:stream";
import { problemTitle } from "./problem.js";
import { securityHeaders } from "./securityHeaders.js";

type ParserError = Error & { code?: string; rawPacket?: Buffer };

export function clientErrorHandler(): (err: ParserError, socket: Duplex) => void {
  const security = securityHeaders()
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join("");
  return (err, socket) => {
    if (err.code === "ECONNRESET" || !socket.writable) {
      socket.destroy();
      return;
    }
    const [status, code, detail] =
      err.code === "HPE_HEADER_OVERFLOW"
        ? [431, "headers_too_large", "the request line and headers are larger than the server accepts (16 KiB)"]
        : err.code === "ERR_HTTP_REQUEST_TIMEOUT"
          ? [408, "request_timeout", "the request did not arrive in time"]
          : [400, "malformed_request", "the request is not valid HTTP/1.1"];
    const title = problemTitle(status);
    const body = JSON.stringify({ type: `urn:tally:problem:${code}`, title, status, detail, code });
    // An answer to HEAD has no body (the client would read it as garbage). The request was not parsed, but the
    // bytes that failed start with its method when the request begins the chunk read from the socket.
    const head = err.rawPacket?.subarray(0, 5).toString("latin1").toUpperCase() === "HEAD ";
    socket.end(
      `HTTP/1.1 ${status} ${title}\r\nContent-Type: application/problem+json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${security}Connection: close\r\n\r\n${head ? "" : body}`,
    );
  };
}
