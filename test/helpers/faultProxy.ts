// A fault-injecting HTTP proxy in front of a real Tally, for the clients' conformance suite: each POST /v1/events
// takes the next fault of the scenario (answer 503 or 429 with Retry-After, drop the connection before or after
// forwarding, answer late) and is forwarded untouched once the faults are used up; every other request passes.
// It logs each ingest request (time, events, body format, what was done) so a scenario can check the client's
// pacing and formats.
import http from "node:http";
import type { AddressInfo } from "node:net";
import { gunzipSync } from "node:zlib";

export interface Fault {
  /** respond: answer `status` itself; drop_before: close the connection without forwarding; drop_after: forward,
   * let Tally commit and answer, then close the connection instead of answering; delay: forward, answer late. */
  action: "respond" | "drop_before" | "drop_after" | "delay";
  status?: number;
  retry_after?: string;
  delay_ms?: number;
  /** How many consecutive ingest requests get this fault (default 1). */
  times?: number;
}

export interface IngestRequest {
  at: number;
  events: number;
  format: "json" | "ndjson" | "ndjson+gzip" | "json+gzip";
  action: Fault["action"] | "forward";
  status: number | undefined;
}

interface FaultProxy {
  url: string;
  log: IngestRequest[];
  /** A fault for every ingest request while set (an outage of some length), ahead of the scenario's list. */
  override: Fault | undefined;
  /** Where requests go (a restarted Tally listens elsewhere); while it is down, the proxy answers 502. */
  setTarget(url: string): void;
  close(): Promise<void>;
}

function countEvents(body: Buffer, type: string, gzip: boolean): { events: number; format: IngestRequest["format"] } {
  const text = (gzip ? gunzipSync(body) : body).toString("utf8");
  const ndjson = !type.includes("json") || type.includes("ndjson");
  const format = `${ndjson ? "ndjson" : "json"}${gzip ? "+gzip" : ""}` as IngestRequest["format"];
  if (ndjson) return { events: text.split("\n").filter((l) => l.trim() !== "").length, format };
  try {
    return { events: (JSON.parse(text) as { events: unknown[] }).events.length, format };
  } catch {
    return { events: -1, format };
  }
}

const readBody = (req: http.IncomingMessage) =>
  new Promise<Buffer>((resolve, reject) => {
    const parts: Buffer[] = [];
    req.on("data", (d: Buffer) => parts.push(d));
    req.on("end", () => resolve(Buffer.concat(parts)));
    req.on("error", reject);
  });

/** Forwards one request to `target`; resolves with Tally's whole answer. */
function forward(
  target: URL,
  req: http.IncomingMessage,
  body: Buffer,
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const headers = { ...req.headers, host: target.host, "content-length": String(body.length) };
    delete headers["transfer-encoding"];
    const out = http.request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers },
      (res) => {
        readBody(res).then((b) => resolve({ status: res.statusCode ?? 502, headers: res.headers, body: b }), reject);
      },
    );
    out.on("error", reject);
    out.end(body);
  });
}

export async function startFaultProxy(targetUrl: string, faults: Fault[]): Promise<FaultProxy> {
  let target = new URL(targetUrl);
  const queue = faults.flatMap((f) => Array.from({ length: f.times ?? 1 }, () => f));
  const log: IngestRequest[] = [];
  const sockets = new Set<import("node:net").Socket>();
  const proxy: FaultProxy = {
    url: "",
    log,
    override: undefined,
    setTarget: (url) => {
      target = new URL(url);
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
  const server = http.createServer(async (req, res) => {
    try {
      const body = await readBody(req);
      const ingest = req.method === "POST" && req.url?.split("?")[0] === "/v1/events";
      const fault = ingest ? (proxy.override ?? queue.shift()) : undefined;
      const entry: IngestRequest | undefined = ingest
        ? {
            at: Date.now(),
            ...countEvents(body, req.headers["content-type"] ?? "", req.headers["content-encoding"] === "gzip"),
            action: fault?.action ?? "forward",
            status: undefined,
          }
        : undefined;
      if (entry) log.push(entry);
      if (fault?.action === "drop_before") {
        req.socket.destroy();
        return;
      }
      if (fault?.action === "respond") {
        const status = fault.status ?? 503;
        const headers: Record<string, string> = { "Content-Type": "application/problem+json" };
        if (fault.retry_after !== undefined) headers["Retry-After"] = fault.retry_after;
        const code = status === 429 ? "rate_limited" : status === 413 ? "body_too_large" : "unavailable";
        (entry as IngestRequest).status = status;
        res.writeHead(status, headers);
        res.end(
          JSON.stringify({ type: `urn:tally:problem:${code}`, title: "fault", status, detail: "injected", code }),
        );
        return;
      }
      const answer = await forward(target, req, body);
      if (entry) entry.status = answer.status;
      if (fault?.action === "drop_after") {
        // Tally committed and answered; the client never hears it.
        req.socket.destroy();
        return;
      }
      if (fault?.action === "delay") await new Promise((r) => setTimeout(r, fault.delay_ms ?? 1000));
      if (req.socket.destroyed) return;
      const headers = { ...answer.headers };
      delete headers["transfer-encoding"];
      delete headers.connection;
      res.writeHead(answer.status, headers);
      res.end(answer.body);
    } catch (err) {
      if (!res.headersSent) res.writeHead(502, { "Content-Type": "text/plain" });
      res.end(String(err));
    }
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  server.listen(0, "127.0.0.1");
  await new Promise((r) => server.once("listening", r));
  const { port } = server.address() as AddressInfo;
  proxy.url = `http://127.0.0.1:${port}`;
  return proxy;
}
