// The entitlement fast path: `GET /v1/entitlements/{customer}/{meter}` answered before Express when everything
// it needs is already in memory (a recently verified key, a known meter, the decision). Enforcement middleware
// asks this on every request of other services, and the Express stack (router, helmet, body handling) costs
// most of the time of such a small answer. Anything else — an unknown key, a 4xx, a cold decision, shutdown, a key
// over its request rate — falls through to the regular route, which gives the same answer the slow way.
import type { IncomingMessage, ServerResponse } from "node:http";
import { customerId, meterKey } from "../catalog/schemas.js";
import type { AppContext } from "./context.js";
import { entitlementReply } from "./routes/limits.js";
import { securityHeaders } from "./securityHeaders.js";

const PREFIX = "/v1/entitlements/";
const ROUTE = "/v1/entitlements/{customer}/{meter}";

export function entitlementFastPath(ctx: AppContext): (req: IncomingMessage, res: ServerResponse) => boolean {
  const security = securityHeaders();
  const served = ctx.metrics.counter(
    "tally_entitlement_fast_path_total",
    "Entitlement decisions answered from memory before Express",
    [],
  );
  return (req, res) => {
    const url = req.url ?? "";
    if (req.method !== "GET" || !url.startsWith(PREFIX) || ctx.state.draining) return false;
    const started = process.hrtime.bigint();
    const rest = url.slice(PREFIX.length);
    if (rest.includes("?")) return false;
    const slash = rest.indexOf("/");
    if (slash < 0 || rest.indexOf("/", slash + 1) >= 0) return false;
    let customer: string;
    let meter: string;
    try {
      customer = decodeURIComponent(rest.slice(0, slash));
      meter = decodeURIComponent(rest.slice(slash + 1));
    } catch {
      return false;
    }
    const auth = ctx.keys.cachedAuth(req.headers.authorization);
    if (!auth || !(auth.scopes.includes("admin") || auth.scopes.includes("read"))) return false;
    if (auth.customer && auth.customer !== customer) return false;
    if (!customerId.safeParse(customer).success || !meterKey.safeParse(meter).success) return false;
    if (!ctx.meters.knownNow(meter)) return false;
    const decision = ctx.limits.cachedEntitlement(customer, meter);
    if (!decision) return false;
    // Last check, so a request that falls through for another reason does not take a token twice. Over the
    // rate, the regular route answers the 429 (it finds the bucket still empty).
    if (ctx.rateLimit.take(auth.keyId) !== 0) return false;
    const reply = entitlementReply(customer, meter, decision, ctx.clock.now());
    const body = JSON.stringify(reply.body);
    for (const [k, v] of security) res.setHeader(k, v);
    for (const [k, v] of Object.entries(reply.headers ?? {})) res.setHeader(k, v);
    const type = (reply.headers?.["Content-Type"] ?? "application/json").split(";")[0];
    res.setHeader("Content-Type", `${type}; charset=utf-8`);
    res.setHeader("Content-Length", Buffer.byteLength(body));
    res.statusCode = reply.status;
    res.end(body);
    served.inc();
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    ctx.metrics.httpDuration.observe({ method: "GET", route: ROUTE, status: String(reply.status) }, seconds);
    return true;
  };
}
