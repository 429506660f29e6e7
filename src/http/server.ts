// The HTTP server's life: listening (the entitlement fast path before Express, timeouts for load balancers and bulk
// loads) and draining on shutdown (requests in flight finish and are answered, then the port closes).
import { once } from "node:events";
import { createServer, type RequestListener, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "../logger.js";
import { clientErrorHandler } from "./clientError.js";
import type { AppContext } from "./context.js";
import { entitlementFastPath } from "./fastPath.js";

export class HttpServer {
  #server: Server | undefined;
  readonly #inFlight = new Set<ServerResponse>();

  constructor(
    private readonly ctx: AppContext,
    private readonly app: RequestListener,
    /** Called for each request (a cluster worker counts what it answered). */
    private readonly onRequest?: () => void,
  ) {}

  /** Listens on `port` and `host`; returns the base URL it answers at. */
  async listen(port: number, host: string): Promise<string> {
    const fast = entitlementFastPath(this.ctx);
    const server = createServer((req, res) => {
      this.#inFlight.add(res);
      this.onRequest?.();
      res.once("close", () => this.#inFlight.delete(res));
      if (!fast(req, res)) this.app(req, res);
    });
    this.#server = server;
    server.on("clientError", clientErrorHandler());
    server.listen(port, host);
    // Longer than load balancers' idle timeouts (often 60 s), so they never reuse a socket Node just closed.
    server.keepAliveTimeout = 65_000;
    server.headersTimeout = 66_000;
    // NDJSON bulk loads (up to 1 GiB by default) may take minutes to stream; Node's default is 5 minutes.
    server.requestTimeout = 3_600_000;
    await once(server, "listening");
    // A URL to reach it from this machine: bound to every interface (0.0.0.0, ::), that is loopback.
    const address = server.address() as AddressInfo;
    const local = address.address === "0.0.0.0" ? "127.0.0.1" : address.address === "::" ? "::1" : address.address;
    return `http://${local.includes(":") ? `[${local}]` : local}:${address.port}`;
  }

  /**
   * Waits up to `timeoutMs` for the requests in flight, then closes the port; connections still open a second
   * later are cut. The caller has set ctx.state.draining first, so new requests get 503 meanwhile.
   */
  async drain(timeoutMs: number, log: Logger): Promise<void> {
    const pending = [...this.#inFlight];
    log.info({ in_flight: pending.length }, "shutting down: finishing in-flight requests");
    const s = this.#server;
    if (!s) return;
    const deadline = new Promise<void>((resolve) => setTimeout(resolve, timeoutMs).unref());
    const finished = Promise.all(
      pending.map((r) => (r.writableFinished || r.destroyed ? undefined : once(r, "close"))),
    );
    await Promise.race([finished, deadline]);
    const closed = new Promise<void>((resolve) => s.close(() => resolve()));
    s.closeIdleConnections();
    const timer = setTimeout(() => {
      log.warn("shutdown timeout reached: closing remaining connections");
      s.closeAllConnections();
    }, 1_000);
    await closed;
    clearTimeout(timer);
  }
}

/**
 * The start-up line: what Tally listens on, as configured (HOST), and a URL that reaches it from this machine — not
 * the same thing when HOST is 0.0.0.0 (the default) or ::, which is every network interface.
 */
export function listeningLine(host: string, url: string): { listening: string; message: string; everywhere: boolean } {
  const everywhere = host === "0.0.0.0" || host === "::";
  const listening = `http://${host.includes(":") ? `[${host}]` : host}:${new URL(url).port}`;
  const message = everywhere
    ? `Tally listening on ${listening} (every network interface), reachable here at ${url}`
    : `Tally listening on ${listening}`;
  return { listening, message, everywhere };
}
