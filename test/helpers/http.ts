// Raw HTTP against a listening Tally: any method, path bytes as given (undecodable % escapes stay as they are),
// body bytes as given, over keep-alive connections. Unlike supertest on the in-process app, this also goes
// through the entitlement fast path (it sits in front of Express in the listening server) and costs no
// server start per request, which matters for thousands of fuzz cases.
import http from "node:http";

export interface RawRequest {
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
}

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
}

export interface HttpClient {
  send(r: RawRequest, timeoutMs?: number): Promise<RawResponse>;
  close(): void;
}

export function httpClient(base: string, maxSockets = 8): HttpClient {
  const agent = new http.Agent({ keepAlive: true, maxSockets });
  const { hostname, port } = new URL(base);
  return {
    send(r, timeoutMs = 20_000) {
      return new Promise((resolve, reject) => {
        const body = r.body === undefined ? undefined : Buffer.isBuffer(r.body) ? r.body : Buffer.from(r.body);
        const headers: Record<string, string | number> = { ...r.headers };
        if (body !== undefined) headers["Content-Length"] = body.length;
        const req = http.request(
          { host: hostname, port: Number(port), method: r.method, path: r.path, headers, agent },
          (res) => {
            const parts: Buffer[] = [];
            res.on("data", (d: Buffer) => parts.push(d));
            res.on("end", () =>
              resolve({
                status: res.statusCode ?? 0,
                headers: res.headers,
                text: Buffer.concat(parts).toString("utf8"),
              }),
            );
            res.on("error", reject);
          },
        );
        req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
        req.on("error", reject);
        req.end(body);
      });
    },
    close() {
      agent.destroy();
    },
  };
}
