// Typed reads: each method is one GET of Tally's API, its answer typed by the types generated from the OpenAPI
// document (src/generated/openapi.ts). A non-2xx answer throws TallyApiError with Tally's problem+json.
import { type Problem, TallyApiError } from "./errors.js";
import type { components, paths } from "./generated/openapi.js";

type Schemas = components["schemas"];
export type UsageSeries = Schemas["UsageSeries"];
export type CustomerSummary = Schemas["CustomerSummary"];
export type InvoicePreview = Schemas["InvoicePreview"];
export type Invoice = Schemas["Invoice"];
export type Credits = Schemas["Credits"];
export type Entitlement = Schemas["Entitlement"];
export type EventReceipt = Schemas["EventReceipt"];

export type UsageQuery = paths["/v1/usage"]["get"]["parameters"]["query"];
export type InvoiceQuery = NonNullable<paths["/v1/invoices"]["get"]["parameters"]["query"]>;

/** A blocked entitlement: Tally's 429 problem+json, with `Retry-After` in seconds. */
export interface Blocked extends Problem {
  allowed: false;
  retryAfterSeconds: number | undefined;
}

type Query = Record<string, string | number | undefined | Record<string, string | string[]>>;

const seg = encodeURIComponent;

export class Reads {
  readonly #url: string;
  readonly #apiKey: string;
  readonly #timeoutMs: number;

  constructor(url: string, apiKey: string, timeoutMs: number) {
    this.#url = url;
    this.#apiKey = apiKey;
    this.#timeoutMs = timeoutMs;
  }

  /** Usage per hour, day or month (`GET /v1/usage`). */
  usage(query: UsageQuery): Promise<UsageSeries> {
    return this.#json("/v1/usage", query as Query);
  }

  /** The current (or `period`, YYYY-MM) period's quantities and amounts (`GET /v1/customers/{id}/summary`). */
  summary(customer: string, opts: { period?: string } = {}): Promise<CustomerSummary> {
    return this.#json(`/v1/customers/${seg(customer)}/summary`, opts);
  }

  /** The invoice preview of a period (`GET /v1/customers/{id}/invoice`). */
  invoicePreview(customer: string, opts: { period?: string } = {}): Promise<InvoicePreview> {
    return this.#json(`/v1/customers/${seg(customer)}/invoice`, opts);
  }

  /** Invoices, newest period first (`GET /v1/invoices`). */
  async invoices(query: InvoiceQuery = {}): Promise<Invoice[]> {
    return (await this.#json<{ data: Invoice[] }>("/v1/invoices", query as Query)).data;
  }

  /** One invoice (`GET /v1/invoices/{id}`). */
  invoice(id: string): Promise<Invoice> {
    return this.#json(`/v1/invoices/${seg(id)}`);
  }

  /** Credit balance and grants (`GET /v1/customers/{id}/credits`). */
  credits(customer: string): Promise<Credits> {
    return this.#json(`/v1/customers/${seg(customer)}/credits`);
  }

  /** May `customer` use `meter` now? A block (429) is an answer, not an error. */
  async entitlement(customer: string, meter: string): Promise<Entitlement | Blocked> {
    const res = await this.#get(`/v1/entitlements/${seg(customer)}/${seg(meter)}`);
    if (res.status === 429) {
      const problem = parse(res.text) as Problem | undefined;
      if (problem?.allowed === false) {
        const retryAfter = res.headers.get("retry-after");
        return { ...problem, allowed: false, retryAfterSeconds: retryAfter ? Number(retryAfter) : undefined };
      }
    }
    return this.#body(res, `/v1/entitlements/${customer}/${meter}`);
  }

  /** Was this event counted? The stored event, or null when none arrived within the dedupe window. */
  async receipt(customer: string, id: string): Promise<EventReceipt | null> {
    const path = `/v1/events/${seg(customer)}/${seg(id)}`;
    const res = await this.#get(path);
    if (res.status === 404) return null;
    return this.#body(res, path);
  }

  async #json<T>(path: string, query: Query = {}): Promise<T> {
    return this.#body(await this.#get(path, query), path);
  }

  async #get(path: string, query: Query = {}): Promise<{ status: number; text: string; headers: Headers }> {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
      if (v === undefined) continue;
      if (typeof v === "object") {
        for (const [dim, values] of Object.entries(v))
          for (const one of Array.isArray(values) ? values : [values]) qs.append(`${k}[${dim}]`, one);
      } else qs.append(k, String(v));
    }
    const search = qs.toString();
    const url = `${this.#url}${path}${search ? `?${search}` : ""}`;
    let res: Response;
    try {
      res = await fetch(url, {
        headers: { Authorization: `Bearer ${this.#apiKey}`, Accept: "application/json" },
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
    } catch (err) {
      throw new TallyApiError(`Tally did not answer GET ${path}: ${(err as Error).message}`, 0, undefined, {
        cause: err,
      });
    }
    return { status: res.status, text: await res.text(), headers: res.headers };
  }

  #body<T>(res: { status: number; text: string }, path: string): T {
    if (res.status >= 200 && res.status < 300) return parse(res.text) as T;
    const problem = parse(res.text) as Problem | undefined;
    throw new TallyApiError(
      `GET ${path}: ${res.status} ${problem?.code ?? ""} ${problem?.detail ?? res.text.slice(0, 200)}`.trim(),
      res.status,
      problem,
    );
  }
}

function parse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
