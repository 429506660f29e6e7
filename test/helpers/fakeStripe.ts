// A Stripe-like HTTP server for tests (port 0): POST /v1/billing/meter_events as Stripe documents it (form body,
// bearer auth, identifier dedupe with Stripe's error text and stripe-should-retry: false, whole-number values, the
// timestamp window, one concurrent call per customer and event name, a global rate limit), the v2 meter event
// session and stream, POST /v1/invoiceitems with Stripe's idempotency (a key replays the first answer; reused with
// other parameters → 400 idempotency_error), and injectable faults (429, 500,
// hang, accept-then-500; for invoice items also "drop": done (or replayed), then the connection is cut before the
// answer, and "accept-then-500": done, then a 500). Records what it accepted.
import { once } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

interface AcceptedEvent {
  identifier: string;
  eventName: string;
  customer: string;
  value: bigint;
  /** Seconds since the epoch, as Stripe stores it. */
  timestamp: number;
  api: "v1" | "v2";
  /** Arrival order, for `last` ties. */
  order: number;
}

interface RequestRecord {
  /** performance.now() at arrival. */
  at: number;
  path: string;
  status: number;
  identifiers: string[];
}

type Fault =
  | { kind: "429" }
  | { kind: "500" }
  /** Holds the request (as one in flight for its customer and event name) this long, then handles it normally. */
  | { kind: "hang"; ms: number }
  /** Records the event, then answers 500: the case only a reused identifier makes safe. */
  | { kind: "accept-then-500" };

interface FakeInvoiceItem {
  id: string;
  customer: string;
  amount: number;
  currency: string;
  description: string | null;
  period: { start: number; end: number } | null;
  metadata: Record<string, string>;
  idempotencyKey: string | null;
}

type InvoiceItemFault = "429" | "500" | "drop" | "accept-then-500";

export interface FakeStripeOptions {
  apiKey?: string;
  /** Stripe's "now" for the timestamp window (tests pass their ManualClock). */
  now?: () => Date;
  /** Requests per second over all endpoints (Stripe's sandbox: 25). */
  rateLimit?: number;
  /** Event names with an active meter; unset: every name is accepted. */
  meters?: string[];
}

const WINDOW_PAST_S = 35 * 86_400;
const WINDOW_FUTURE_S = 300;
const SESSION_MS = 15 * 60_000;

type StripeErrorBody = { type: string; message: string; code?: string; param?: string };

export class FakeStripe {
  /** The secret key it accepts (tests may change it to see a key refused). */
  apiKey: string;
  readonly events: AcceptedEvent[] = [];
  /** Events the v2 stream took but whose asynchronous validation failed (Stripe reports those by webhook). */
  readonly v2Invalid: { identifier: string; reason: string }[] = [];
  readonly requests: RequestRecord[] = [];
  readonly invoiceItems: FakeInvoiceItem[] = [];
  meters: Set<string> | undefined;
  rateLimit: number;
  #url = "";
  #server: Server;
  #faults: Fault[] = [];
  #itemFaults: { fault: InvoiceItemFault; customer: string | undefined }[] = [];
  /** Idempotency keys: the first request's parameters and answer (handled without waiting, so never in flight). */
  #idempotency = new Map<string, { params: string; status: number; body: unknown }>();
  #identifiers = new Set<string>();
  #inFlight = new Set<string>();
  #sessions = new Map<string, number>();
  #arrivals: number[] = [];
  #order = 0;
  #now: () => Date;

  constructor(opts: FakeStripeOptions = {}) {
    this.apiKey = opts.apiKey ?? "sk_test_fake_0123456789";
    this.#now = opts.now ?? (() => new Date());
    this.rateLimit = opts.rateLimit ?? 25;
    this.meters = opts.meters ? new Set(opts.meters) : undefined;
    this.#server = createServer((req, res) => {
      this.#handle(req, res).catch((err: Error) => {
        if (!res.headersSent) this.#error(res, 500, { type: "api_error", message: err.message }, "/", []);
      });
    });
  }

  get url(): string {
    return this.#url;
  }

  async start(): Promise<this> {
    this.#server.listen(0, "127.0.0.1");
    await once(this.#server, "listening");
    this.#url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
    return this;
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  /** The next `count` meter-event requests meet this fault. */
  inject(fault: Fault, count = 1): void {
    for (let i = 0; i < count; i++) this.#faults.push(fault);
  }

  /** The next `count` invoice-item requests (of one Stripe customer, if given) meet this fault. */
  injectInvoiceItems(fault: InvoiceItemFault, count = 1, customer?: string): void {
    for (let i = 0; i < count; i++) this.#itemFaults.push({ fault, customer });
  }

  clearFaults(): void {
    this.#faults = [];
    this.#itemFaults = [];
  }

  /** Σ values per customer (and event name), optionally of events with timestamps in [from, to). */
  sum(customer: string, eventName: string, range?: { from: Date; to: Date }): bigint {
    let total = 0n;
    for (const e of this.eventsOf(customer, eventName, range)) total += e.value;
    return total;
  }

  /** The value a meter with formula `last` bills for [from, to): the latest timestamp, then the latest arrival. */
  last(customer: string, eventName: string, range?: { from: Date; to: Date }): bigint | undefined {
    const list = this.eventsOf(customer, eventName, range).sort(
      (a, b) => a.timestamp - b.timestamp || a.order - b.order,
    );
    return list.at(-1)?.value;
  }

  eventsOf(customer: string, eventName: string, range?: { from: Date; to: Date }): AcceptedEvent[] {
    return this.events.filter(
      (e) =>
        e.customer === customer &&
        e.eventName === eventName &&
        (!range || (e.timestamp * 1000 >= range.from.getTime() && e.timestamp * 1000 < range.to.getTime())),
    );
  }

  /** Requests being handled right now (one per customer and event name at most). */
  get inFlight(): number {
    return this.#inFlight.size;
  }

  /** Requests that arrived within the last second (the rate limit's window). */
  arrivalsInLastSecond(): number {
    const now = performance.now();
    return this.#arrivals.filter((at) => now - at < 1000).length;
  }

  /** The most requests that arrived within any one second. */
  maxPerSecond(): number {
    const times = this.requests.map((r) => r.at).sort((a, b) => a - b);
    let max = 0;
    let start = 0;
    for (let end = 0; end < times.length; end++) {
      while ((times[end] as number) - (times[start] as number) >= 1000) start++;
      max = Math.max(max, end - start + 1);
    }
    return max;
  }

  #error(
    res: ServerResponse,
    status: number,
    error: StripeErrorBody,
    path: string,
    ids: string[],
    at = performance.now(),
  ) {
    if (status === 400 || status === 401 || status === 404) res.setHeader("stripe-should-retry", "false");
    this.#json(
      res,
      status,
      { error: { ...error, doc_url: `https://stripe.com/docs/error-codes/${error.code ?? error.type}` } },
      path,
      ids,
      at,
    );
  }

  #json(res: ServerResponse, status: number, body: unknown, path: string, ids: string[], at = performance.now()) {
    this.requests.push({ at, path, status, identifiers: ids });
    if (res.destroyed) return;
    res.writeHead(status, { "Content-Type": "application/json", "Request-Id": `req_${this.requests.length}` });
    res.end(JSON.stringify(body));
  }

  /** Counts this arrival; true if it is over the per-second limit (it still counts, as at Stripe). */
  #overLimit(at: number): boolean {
    while (this.#arrivals.length > 0 && at - (this.#arrivals[0] as number) >= 1000) this.#arrivals.shift();
    this.#arrivals.push(at);
    return this.#arrivals.length > this.rateLimit;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const at = performance.now();
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks).toString("utf8");
    const path = (req.url ?? "/").split("?")[0] as string;
    const auth = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1];
    const tooFast = this.#overLimit(at);
    const rateLimited = (ids: string[]) =>
      this.#error(
        res,
        429,
        {
          type: "invalid_request_error",
          code: "rate_limit",
          message:
            "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.",
        },
        path,
        ids,
        at,
      );

    if (req.method === "POST" && path === "/v1/billing/meter_events") {
      const form = new URLSearchParams(body);
      const ids = form.has("identifier") ? [form.get("identifier") as string] : [];
      if (auth !== this.apiKey) return this.#badKey(res, path, at, auth, ids);
      if (tooFast) return rateLimited(ids);
      return this.#meterEvent(form, res, path, at);
    }
    if (req.method === "POST" && path === "/v1/invoiceitems") {
      if (auth !== this.apiKey) return this.#badKey(res, path, at, auth);
      if (tooFast) return rateLimited([]);
      const key = req.headers["idempotency-key"];
      return this.#invoiceItem(new URLSearchParams(body), typeof key === "string" ? key : undefined, res, path, at);
    }
    if (req.method === "POST" && path === "/v2/billing/meter_event_session") {
      if (auth !== this.apiKey) return this.#badKey(res, path, at, auth);
      if (tooFast)
        return this.#error(res, 429, { type: "rate_limit", message: "Request rate limit exceeded." }, path, [], at);
      const token = `mes_tok_${Math.random().toString(36).slice(2)}${this.#sessions.size}`;
      const created = this.#now();
      const expires = new Date(created.getTime() + SESSION_MS);
      this.#sessions.set(token, expires.getTime());
      return this.#json(
        res,
        200,
        {
          id: `mes_${this.#sessions.size}`,
          object: "v2.billing.meter_event_session",
          authentication_token: token,
          created: created.toISOString(),
          expires_at: expires.toISOString(),
          livemode: false,
        },
        path,
        [],
        at,
      );
    }
    if (req.method === "POST" && path === "/v2/billing/meter_event_stream") {
      const expires = auth ? this.#sessions.get(auth) : undefined;
      if (expires === undefined) return this.#badKey(res, path, at, auth);
      if (expires <= this.#now().getTime()) {
        return this.#error(
          res,
          401,
          {
            type: "temporary_session_expired",
            code: "billing_meter_event_session_expired",
            message: "The meter event session has expired; create a new one.",
          },
          path,
          [],
          at,
        );
      }
      if (tooFast)
        return this.#error(res, 429, { type: "rate_limit", message: "Request rate limit exceeded." }, path, [], at);
      return this.#stream(body, res, path, at);
    }
    return this.#error(
      res,
      404,
      { type: "invalid_request_error", message: `Unrecognized request URL (${req.method}: ${path}).` },
      path,
      [],
      at,
    );
  }

  #badKey(res: ServerResponse, path: string, at: number, key: string | undefined, ids: string[] = []) {
    const shown = key ? `${key.slice(0, 8)}${"*".repeat(Math.max(0, key.length - 12))}${key.slice(-4)}` : "";
    return this.#error(
      res,
      401,
      {
        type: "invalid_request_error",
        message: key ? `Invalid API Key provided: ${shown}` : "You did not provide an API key.",
      },
      path,
      ids,
      at,
    );
  }

  /** Checks one event as Stripe does; undefined when valid, else the message. */
  #invalid(e: {
    eventName?: string;
    customer?: string;
    value?: string;
    timestamp?: number;
    identifier?: string;
  }): { param: string; message: string } | undefined {
    if (!e.eventName) return { param: "event_name", message: "Missing required param: event_name." };
    if (this.meters && !this.meters.has(e.eventName)) {
      return { param: "event_name", message: `No active meter found with event_name ${e.eventName}.` };
    }
    if (!e.customer)
      return { param: "payload[stripe_customer_id]", message: "Missing required param: payload[stripe_customer_id]." };
    if (e.value === undefined || !/^-?\d+$/.test(e.value)) {
      return { param: "payload[value]", message: `Invalid value: ${e.value}. Values must be whole numbers.` };
    }
    if (e.value.replace(/^-/, "").replace(/^0+(?=\d)/, "").length > 15) {
      return { param: "payload[value]", message: "Invalid value: at most 15 significant digits are allowed." };
    }
    if (e.identifier !== undefined && (e.identifier.length === 0 || e.identifier.length > 100)) {
      return { param: "identifier", message: "Invalid identifier: must be 1 to 100 characters." };
    }
    const now = Math.floor(this.#now().getTime() / 1000);
    if (e.timestamp === undefined || !Number.isInteger(e.timestamp))
      return { param: "timestamp", message: "Invalid timestamp." };
    if (e.timestamp < now - WINDOW_PAST_S) {
      return { param: "timestamp", message: "Timestamp must be within the past 35 calendar days." };
    }
    if (e.timestamp > now + WINDOW_FUTURE_S) {
      return { param: "timestamp", message: "Timestamp must not be more than 5 minutes in the future." };
    }
    return undefined;
  }

  #accept(
    e: { identifier: string; eventName: string; customer: string; value: string; timestamp: number },
    api: "v1" | "v2",
  ) {
    this.#identifiers.add(e.identifier);
    this.events.push({ ...e, value: BigInt(e.value), api, order: this.#order++ });
  }

  async #meterEvent(form: URLSearchParams, res: ServerResponse, path: string, at: number): Promise<void> {
    const identifier = form.get("identifier") ?? `gen_${Math.random().toString(36).slice(2)}`;
    const event = {
      eventName: form.get("event_name") ?? undefined,
      customer: form.get("payload[stripe_customer_id]") ?? undefined,
      value: form.get("payload[value]") ?? undefined,
      timestamp: form.has("timestamp") ? Number(form.get("timestamp")) : Math.floor(this.#now().getTime() / 1000),
      identifier,
    };
    const ids = [identifier];
    const invalid = this.#invalid(event);
    if (invalid) return this.#error(res, 400, { type: "invalid_request_error", ...invalid }, path, ids, at);
    const pair = `${event.customer}\u0000${event.eventName}`;
    if (this.#inFlight.has(pair)) {
      return this.#error(
        res,
        429,
        {
          type: "invalid_request_error",
          code: "rate_limit",
          message:
            "Too many concurrent requests for this customer and meter. Send one meter event at a time per customer and meter.",
        },
        path,
        ids,
        at,
      );
    }
    this.#inFlight.add(pair);
    try {
      const fault = this.#faults.shift();
      if (fault?.kind === "429") {
        return this.#error(
          res,
          429,
          { type: "invalid_request_error", code: "rate_limit", message: "Request rate limit exceeded." },
          path,
          ids,
          at,
        );
      }
      if (fault?.kind === "500")
        return this.#error(res, 500, { type: "api_error", message: "An unknown error occurred." }, path, ids, at);
      if (fault?.kind === "hang") await new Promise((r) => setTimeout(r, fault.ms));
      if (this.#identifiers.has(identifier)) {
        return this.#error(
          res,
          400,
          { type: "invalid_request_error", message: `An event already exists with identifier ${identifier}.` },
          path,
          ids,
          at,
        );
      }
      const accepted = {
        ...event,
        eventName: event.eventName as string,
        customer: event.customer as string,
        value: event.value as string,
      };
      this.#accept(accepted, "v1");
      if (fault?.kind === "accept-then-500")
        return this.#error(res, 500, { type: "api_error", message: "An unknown error occurred." }, path, ids, at);
      return this.#json(
        res,
        200,
        {
          object: "billing.meter_event",
          created: Math.floor(this.#now().getTime() / 1000),
          event_name: accepted.eventName,
          identifier,
          livemode: false,
          payload: { stripe_customer_id: accepted.customer, value: accepted.value },
          timestamp: accepted.timestamp,
        },
        path,
        ids,
        at,
      );
    } finally {
      this.#inFlight.delete(pair);
    }
  }

  #invoiceItem(form: URLSearchParams, key: string | undefined, res: ServerResponse, path: string, at: number) {
    const params = JSON.stringify([...form.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    const saved = key === undefined ? undefined : this.#idempotency.get(key);
    const faultAt = this.#itemFaults.findIndex((f) => f.customer === undefined || f.customer === form.get("customer"));
    const fault = faultAt >= 0 ? this.#itemFaults.splice(faultAt, 1)[0]?.fault : undefined;
    if (fault === "429") {
      return this.#error(
        res,
        429,
        { type: "invalid_request_error", code: "rate_limit", message: "Request rate limit exceeded." },
        path,
        [],
        at,
      );
    }
    if (fault === "500")
      return this.#error(res, 500, { type: "api_error", message: "An unknown error occurred." }, path, [], at);
    const drop = () => {
      this.requests.push({ at, path, status: 0, identifiers: [] });
      res.destroy();
    };
    if (saved && saved.params !== params) {
      return this.#error(
        res,
        400,
        {
          type: "idempotency_error",
          message: `Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${key}' if you meant to execute a different request.`,
        },
        path,
        [],
        at,
      );
    }
    if (saved) {
      if (fault === "drop") return drop();
      res.setHeader("Idempotent-Replayed", "true");
      return this.#json(res, saved.status, saved.body, path, [], at);
    }
    const missing = ["customer", "amount", "currency"].find((p) => !form.get(p));
    const amount = Number(form.get("amount"));
    if (missing || !Number.isSafeInteger(amount)) {
      const param = missing ?? "amount";
      return this.#error(
        res,
        400,
        { type: "invalid_request_error", param, message: `Missing or invalid required param: ${param}.` },
        path,
        [],
        at,
      );
    }
    const metadata: Record<string, string> = {};
    for (const [k, v] of form.entries()) {
      const m = /^metadata\[(.+)\]$/.exec(k);
      if (m?.[1]) metadata[m[1]] = v;
    }
    const item: FakeInvoiceItem = {
      id: `ii_${this.invoiceItems.length + 1}`,
      customer: form.get("customer") as string,
      amount,
      currency: form.get("currency") as string,
      description: form.get("description"),
      period: form.has("period[start]")
        ? { start: Number(form.get("period[start]")), end: Number(form.get("period[end]")) }
        : null,
      metadata,
      idempotencyKey: key ?? null,
    };
    this.invoiceItems.push(item);
    const body = {
      object: "invoiceitem",
      ...item,
      date: Math.floor(this.#now().getTime() / 1000),
      livemode: false,
      invoice: null,
    };
    if (key !== undefined) this.#idempotency.set(key, { params, status: 200, body });
    if (fault === "drop") return drop();
    if (fault === "accept-then-500") {
      return this.#error(res, 500, { type: "api_error", message: "An unknown error occurred." }, path, [], at);
    }
    return this.#json(res, 200, body, path, [], at);
  }

  async #stream(body: string, res: ServerResponse, path: string, at: number): Promise<void> {
    let parsed: { events?: unknown };
    try {
      parsed = JSON.parse(body) as { events?: unknown };
    } catch {
      return this.#error(res, 400, { type: "invalid_request_error", message: "Invalid JSON body." }, path, [], at);
    }
    const events = parsed.events;
    if (!Array.isArray(events) || events.length === 0 || events.length > 100) {
      return this.#error(
        res,
        400,
        { type: "invalid_request_error", message: "events must hold 1 to 100 events." },
        path,
        [],
        at,
      );
    }
    const list = events as {
      event_name?: string;
      identifier?: string;
      payload?: Record<string, string>;
      timestamp?: string;
    }[];
    const ids = list.map((e) => e.identifier ?? "");
    const fault = this.#faults.shift();
    if (fault?.kind === "429")
      return this.#error(res, 429, { type: "rate_limit", message: "Request rate limit exceeded." }, path, ids, at);
    if (fault?.kind === "500")
      return this.#error(res, 500, { type: "api_error", message: "An unknown error occurred." }, path, ids, at);
    if (fault?.kind === "hang") await new Promise((r) => setTimeout(r, fault.ms));
    // Validation is asynchronous on the stream: bad events are dropped (and reported by webhook), duplicates ignored.
    for (const e of list) {
      const identifier = e.identifier ?? `gen_${Math.random().toString(36).slice(2)}`;
      const ts = e.timestamp ? Date.parse(e.timestamp) : Number.NaN;
      const candidate = {
        eventName: e.event_name,
        customer: e.payload?.stripe_customer_id,
        value: e.payload?.value,
        timestamp: Number.isNaN(ts) || ts % 1000 !== 0 ? Number.NaN : ts / 1000,
        identifier,
      };
      const invalid = this.#invalid(candidate);
      if (invalid) {
        this.v2Invalid.push({ identifier, reason: invalid.message });
        continue;
      }
      if (this.#identifiers.has(identifier)) continue;
      this.#accept(
        candidate as { identifier: string; eventName: string; customer: string; value: string; timestamp: number },
        "v2",
      );
    }
    if (fault?.kind === "accept-then-500")
      return this.#error(res, 500, { type: "api_error", message: "An unknown error occurred." }, path, ids, at);
    return this.#json(res, 202, {}, path, ids, at);
  }
}

export async function startFakeStripe(opts: FakeStripeOptions = {}): Promise<FakeStripe> {
  return new FakeStripe(opts).start();
}
