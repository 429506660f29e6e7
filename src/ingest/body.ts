// Reading ingest bodies: content type and encoding checks, gzip, byte limits (counted after decompression, so a
// gzip bomb stops at the limit), and NDJSON split into lines without ever holding more than one line.
import type { Readable } from "node:stream";
import { createGunzip } from "node:zlib";
import { AppError, payloadTooLarge, unsupportedMediaType } from "../errors.js";

type BodyFormat = "json" | "ndjson";

/** An ingest body as it arrives: the raw bytes and the two headers that say how to read them. */
export interface IngestBody {
  stream: Readable;
  contentType?: string;
  contentEncoding?: string;
}

export function bodyFormat(body: IngestBody): BodyFormat {
  const type = (body.contentType ?? "").split(";")[0]?.trim().toLowerCase();
  if (type === "application/json") return "json";
  if (type === "application/x-ndjson" || type === "application/ndjson" || type === "application/jsonl") return "ndjson";
  throw unsupportedMediaType(
    `send events as application/json ({"events":[...]}) or application/x-ndjson (one event per line); got ${type || "no content type"}`,
  );
}

/** The decoded body stream: gzip is undone, anything but gzip/identity is refused with 415. */
export function decodedStream(body: IngestBody): Readable {
  const req = body.stream;
  const encoding = (body.contentEncoding ?? "identity").trim().toLowerCase();
  if (encoding === "identity" || encoding === "") return req;
  if (encoding === "gzip" || encoding === "x-gzip") {
    const gunzip = createGunzip();
    req.on("error", (err) => gunzip.destroy(err));
    // A zlib error destroys the stream, which keeps the error and throws it to whoever reads it (as a 400). Without
    // a listener, an error before the first read — NDJSON starts reading only once its transaction has begun — was
    // an uncaught exception that stopped the process (found by test/fuzz.test.ts).
    gunzip.on("error", () => {});
    return req.pipe(gunzip);
  }
  throw new AppError(
    415,
    "unsupported_content_encoding",
    `Content-Encoding ${encoding} is not supported; use gzip or none`,
  );
}

const corruptGzip = (err: unknown) =>
  new AppError(400, "malformed_body", `the body could not be decoded: ${(err as Error).message}`);

/** Yields the stream's chunks, failing with 413 once more than `limit` bytes have come. */
export async function* limited(stream: Readable, limit: number, what: string): AsyncGenerator<Buffer> {
  let total = 0;
  try {
    for await (const chunk of stream) {
      const buf = chunk as Buffer;
      total += buf.length;
      if (total > limit) throw payloadTooLarge(`${what} is larger than ${limit} bytes`);
      yield buf;
    }
  } catch (err) {
    if (err instanceof AppError) throw err;
    if ((err as { code?: string }).code?.startsWith("Z_")) throw corruptGzip(err);
    throw err;
  }
}

export async function readAll(stream: Readable, limit: number, what: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of limited(stream, limit, what)) parts.push(chunk);
  return Buffer.concat(parts);
}

export interface Line {
  /** 1-based line number in the body. */
  number: number;
  text?: string;
  /** Why the line could not be read (too long, not UTF-8). */
  problem?: string;
}

const NEWLINE = 0x0a;

/** Splits a byte stream into lines; a line longer than maxLineBytes is reported, not buffered. */
export async function* lines(chunks: AsyncIterable<Buffer>, maxLineBytes: number): AsyncGenerator<Line> {
  const decoder = new TextDecoder("utf-8", { fatal: true });
  let parts: Buffer[] = [];
  let size = 0;
  let tooLong = false;
  let number = 0;
  const finish = (): Line => {
    number += 1;
    if (tooLong) {
      tooLong = false;
      parts = [];
      size = 0;
      return { number, problem: `line is longer than ${maxLineBytes} bytes` };
    }
    const bytes = parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, size);
    parts = [];
    size = 0;
    try {
      let text = decoder.decode(bytes);
      if (text.endsWith("\r")) text = text.slice(0, -1);
      return { number, text };
    } catch {
      return { number, problem: "line is not valid UTF-8" };
    }
  };
  for await (const chunk of chunks) {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(NEWLINE, start);
      const end = nl === -1 ? chunk.length : nl;
      if (end > start && !tooLong) {
        if (size + (end - start) > maxLineBytes) tooLong = true;
        else {
          parts.push(chunk.subarray(start, end));
          size += end - start;
        }
      }
      if (nl === -1) break;
      yield finish();
      start = nl + 1;
    }
  }
  if (size > 0 || tooLong) yield finish();
}
