// One batch on the wire: its body (JSON, or gzip NDJSON when large), the POST, and what Tally's answer means for
// the batch — delivered, retry later, some events refused (the rest go again with the same ids), too large (split)
// or refused whole. The rules are the same in the Python client (clients/python/tally_client/_core.py).
import { promisify } from "node:util";
import { gzip as gzipCallback } from "node:zlib";
import type { EventProblem, Problem } from "./errors.js";

const gzip = promisify(gzipCallback);

/** Tally's JSON batch limit (TALLY_JSON_MAX_EVENTS): more events always go as NDJSON. */
const JSON_MAX_EVENTS = 10_000;

export type Outcome =
  | { kind: "delivered"; accepted: number; duplicates: number }
  /** Network error, timeout, 408, 429, 5xx: the same events again, later (`retryAfterMs` from Retry-After). */
  | { kind: "retry"; reason: string; retryAfterMs: number | undefined }
  /** 400/422 naming events by index: those are refused, the others were valid and go again. */
  | { kind: "refused-some"; status: number; code: string; refused: Map<number, EventProblem[]> }
  /** 413: Tally's limits are lower than the batch; halves go separately. */
  | { kind: "too-large"; status: number; code: string; detail: string }
  /** Any other 4xx (401, 403, 404, 415, …): nothing in the batch can be stored as it is. */
  | { kind: "refused-all"; status: number; code: string; detail: string };

interface Body {
  body: string | Buffer;
  headers: Record<string, string>;
}

/** The request body for these serialized events: JSON up to `gzipAboveBytes`, gzip NDJSON above. */
export async function encodeBatch(lines: string[], bytes: number, gzipAboveBytes: number): Promise<Body> {
  if (bytes <= gzipAboveBytes && lines.length <= JSON_MAX_EVENTS) {
    return { body: `{"events":[${lines.join(",")}]}`, headers: { "Content-Type": "application/json" } };
  }
  // Level 1: on a fast network the CPU saved matters more than the last bytes (NDJSON compresses ~10× anyway).
  const body = await gzip(lines.join("\n"), { level: 1 });
  return { body, headers: { "Content-Type": "application/x-ndjson", "Content-Encoding": "gzip" } };
}

/** Retry-After in ms: delta-seconds or an HTTP date (RFC 9110 §10.2.3); undefined when absent or unreadable. */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/**
 * The wait before attempt `attempt` + 1 (attempt ≥ 1): exponential backoff with full jitter, and never less than
 * Retry-After when Tally sent one (plus up to 10%, so that clients told the same second do not return together).
 */
export function retryDelay(
  attempt: number,
  retryAfterMs: number | undefined,
  baseMs: number,
  maxMs: number,
  random = Math.random,
): number {
  const backoff = Math.max(1, Math.floor(random() * Math.min(maxMs, baseMs * 2 ** Math.min(attempt - 1, 30))));
  if (retryAfterMs === undefined) return backoff;
  return Math.max(backoff, retryAfterMs + Math.floor(random() * retryAfterMs * 0.1));
}

function parseProblem(text: string): Problem | undefined {
  try {
    const parsed = JSON.parse(text) as unknown;
    return parsed && typeof parsed === "object" ? (parsed as Problem) : undefined;
  } catch {
    return undefined;
  }
}

const RETRIED = new Set([408, 425, 429]);

/** What an answer to a batch of `count` events means. */
export function classify(status: number, text: string, retryAfter: string | null, count: number): Outcome {
  const problem = status >= 300 ? parseProblem(text) : undefined;
  const code = problem?.code ?? `http_${status}`;
  const detail = problem?.detail ?? text.slice(0, 300);
  if (status >= 200 && status < 300) {
    const r = parseProblem(text) as { accepted?: number; duplicates?: number } | undefined;
    return { kind: "delivered", accepted: r?.accepted ?? count, duplicates: r?.duplicates ?? 0 };
  }
  if (status >= 500 || RETRIED.has(status)) {
    return { kind: "retry", reason: `${status} ${code}: ${detail}`, retryAfterMs: parseRetryAfter(retryAfter) };
  }
  if (status === 413) return { kind: "too-large", status, code, detail };
  if ((status === 400 || status === 422) && problem?.errors?.length) {
    const refused = new Map<number, EventProblem[]>();
    for (const e of problem.errors) {
      // A problem that names no event (the body as a whole) leaves nothing to resend selectively.
      if (typeof e.index !== "number" || e.index < 0 || e.index >= count) {
        return { kind: "refused-all", status, code, detail };
      }
      const list = refused.get(e.index) ?? [];
      list.push({ field: e.field, message: e.message });
      refused.set(e.index, list);
    }
    return { kind: "refused-some", status, code, refused };
  }
  return { kind: "refused-all", status, code, detail };
}

interface PostOptions {
  url: string;
  apiKey: string;
  timeoutMs: number;
  /** Aborts the request when the client gives up (close's deadline). */
  signal: AbortSignal;
}

/** POSTs one body to /v1/events; a network failure or timeout is an outcome (retry), never a throw. */
export async function postBatch(opts: PostOptions, body: Body, count: number): Promise<Outcome> {
  const controller = new AbortController();
  const abort = () => controller.abort();
  const timer = setTimeout(abort, opts.timeoutMs);
  opts.signal.addEventListener("abort", abort);
  try {
    const res = await fetch(`${opts.url}/v1/events`, {
      method: "POST",
      headers: { Authorization: `Bearer ${opts.apiKey}`, Accept: "application/json", ...body.headers },
      body: body.body,
      signal: controller.signal,
    });
    const text = await res.text();
    return classify(res.status, text, res.headers.get("retry-after"), count);
  } catch (err) {
    const cause = (err as Error & { cause?: Error }).cause;
    const reason = controller.signal.aborted
      ? `no answer within ${opts.timeoutMs} ms`
      : `${(err as Error).message}${cause ? `: ${cause.message}` : ""}`;
    return { kind: "retry", reason, retryAfterMs: undefined };
  } finally {
    clearTimeout(timer);
    opts.signal.removeEventListener("abort", abort);
  }
}
