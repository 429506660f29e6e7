// Errors in one place: typed errors with stable snake_case codes. Capability modules throw these; the HTTP layer
// (src/http/problem.ts) renders them as RFC 9457 problem+json.

/** One problem with one field of the input, e.g. `{ index: 3, field: "events[3].timestamp", message }`. */
export interface FieldError {
  index?: number;
  field: string;
  message: string;
}

export class AppError extends Error {
  override name = "AppError";
  constructor(
    readonly status: number,
    readonly code: string,
    detail: string,
    readonly options: { errors?: FieldError[]; headers?: Record<string, string>; extra?: Record<string, unknown> } = {},
  ) {
    super(detail);
  }
}

export const badRequest = (code: string, detail: string, errors?: FieldError[]) =>
  new AppError(400, code, detail, { errors });
export const unprocessable = (code: string, detail: string, errors?: FieldError[]) =>
  new AppError(422, code, detail, { errors });
export const notFound = (detail: string) => new AppError(404, "not_found", detail);
export const conflict = (code: string, detail: string) => new AppError(409, code, detail);
export const payloadTooLarge = (detail: string) => new AppError(413, "body_too_large", detail);
export const unsupportedMediaType = (detail: string) => new AppError(415, "unsupported_media_type", detail);

/** `events` + [3, "timestamp"] → `events[3].timestamp`: the field path users see in a problem's `errors`. */
export function fieldPath(prefix: string, path: readonly PropertyKey[]): string {
  let out = prefix;
  for (const part of path) {
    if (typeof part === "number") out += `[${part}]`;
    else out += out === "" ? String(part) : `.${String(part)}`;
  }
  return out || "(body)";
}
