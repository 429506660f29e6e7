// Route definitions: one zod schema per params/query/body, used both to validate requests and to generate
// the OpenAPI 3.1 document, so the two cannot drift apart.
import { OpenAPIRegistry, OpenApiGeneratorV31 } from "@asteasolutions/zod-to-openapi";
import express, { type NextFunction, type Request, type Response, type Router } from "express";
import { z } from "zod";
import type { Auth, Scope } from "../auth/types.js";
import { unstorableText } from "../catalog/schemas.js";
import { AppError, type FieldError, fieldPath, unsupportedMediaType } from "../errors.js";

export interface Reply {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

interface HandlerInput<P, Q, B> {
  params: P;
  query: Q;
  body: B;
  auth: Auth | null;
  req: Request;
  res: Response;
}

type AnySchema = z.ZodType;
type Infer<S> = S extends z.ZodType ? z.infer<S> : undefined;

interface ResponseDef {
  description: string;
  schema?: AnySchema;
  contentType?: string;
}

export interface RouteDef<
  P extends AnySchema | undefined,
  Q extends AnySchema | undefined,
  B extends AnySchema | undefined,
> {
  method: "get" | "put" | "post" | "delete";
  /** OpenAPI-style path: /v1/meters/{key} */
  path: string;
  summary: string;
  tags: string[];
  /** Scopes that may call this route (admin may call everything); "public" needs no key. */
  scopes: Scope[] | "public";
  params?: P;
  query?: Q;
  body?: B;
  /** Documented request body for routes that read the stream themselves (ingest). */
  rawBody?: { description: string; content: Record<string, { schema: AnySchema }> };
  responses: Record<number, ResponseDef>;
  handle(input: HandlerInput<Infer<P>, Infer<Q>, Infer<B>>): Promise<Reply | undefined> | Reply | undefined;
}

const problemSchema = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    detail: z.string(),
    code: z.string(),
    errors: z
      .array(z.object({ index: z.number().int().optional(), field: z.string(), message: z.string() }))
      .optional(),
  })
  .meta({ id: "Problem" });

/** zod issue path → "events[3].timestamp" */
function zodFieldErrors(error: z.ZodError, prefix = ""): FieldError[] {
  return error.issues.map((issue) => ({ field: fieldPath(prefix, issue.path), message: issue.message }));
}

function validate<S extends AnySchema>(schema: S, value: unknown, where: "path" | "query" | "body"): z.infer<S> {
  // Text the database could not keep exactly is refused here, once for every field of every route (docs/security.md).
  const unstorable = unstorableText(value).map((u) => ({ field: fieldPath("", u.path), message: u.message }));
  const parsed = unstorable.length === 0 ? schema.safeParse(value) : undefined;
  if (parsed?.success) return parsed.data;
  const errors = parsed ? zodFieldErrors(parsed.error) : unstorable;
  const what = where === "body" ? "the request body" : where === "query" ? "the query string" : "the path";
  throw new AppError(
    400,
    "validation_failed",
    `${what} is invalid: ${errors.map((e) => `${e.field}: ${e.message}`).join("; ")}`,
    {
      errors,
    },
  );
}

export interface RouteTable {
  add<P extends AnySchema | undefined, Q extends AnySchema | undefined, B extends AnySchema | undefined>(
    def: RouteDef<P, Q, B>,
  ): void;
  mount(router: Router, deps: MountDeps): void;
  /** Every route with the scopes it accepts (tests build the auth matrix from this). */
  list(): { method: string; path: string; scopes: Scope[] | "public" }[];
  openapi(info: { title: string; version: string }): object;
}

export interface MountDeps {
  authenticate(req: Request): Promise<Auth>;
  requireScope(auth: Auth, scopes: Scope[]): void;
  /** Throws 429 when the key is over its request rate. */
  limitRate(auth: Auth): void;
  jsonLimitBytes: number;
}

/** Routers do not inherit the app's routing settings: every router matches paths exactly (case, trailing slash). */
export const EXACT_PATHS = { caseSensitive: true, strict: true } as const;

const expressPath = (path: string) => path.replace(/\{(\w+)\}/g, ":$1");

function isJsonContentType(req: Request): boolean {
  return req.is(["application/json", "application/*+json"]) !== false;
}

export function createRouteTable(): RouteTable {
  // biome-ignore lint/suspicious/noExplicitAny: heterogeneous route list
  const defs: RouteDef<any, any, any>[] = [];
  return {
    add(def) {
      defs.push(def);
    },
    mount(router, deps) {
      for (const def of defs) router[def.method](expressPath(def.path), routeHandler(def, deps));
    },
    list() {
      return defs.map((d) => ({ method: d.method, path: d.path, scopes: d.scopes }));
    },
    openapi(info) {
      const registry = new OpenAPIRegistry();
      const bearer = registry.registerComponent("securitySchemes", "bearer", {
        type: "http",
        scheme: "bearer",
        description: "An API key. Scopes: admin (everything), ingest, read.",
      });
      for (const def of defs) registerRoute(registry, def, bearer.name);
      return new OpenApiGeneratorV31(registry.definitions).generateDocument({
        openapi: "3.1.0",
        info: { ...info, description: "Tally: usage metering and usage-based billing." },
      });
    },
  };
}

/** The Express handler of one route: authenticate, check the scope, validate, run, answer. */
// biome-ignore lint/suspicious/noExplicitAny: heterogeneous route list
function routeHandler(def: RouteDef<any, any, any>, deps: MountDeps) {
  const json = express.json({ limit: deps.jsonLimitBytes, type: () => true });
  const handler = async (req: Request, res: Response, next: NextFunction) => {
    res.locals.route = def.path;
    try {
      let auth: Auth | null = null;
      if (def.scopes !== "public") {
        auth = await deps.authenticate(req);
        // Every request of a key counts, also one refused for its scope: the limit protects the server.
        deps.limitRate(auth);
        deps.requireScope(auth, def.scopes);
      }
      const params = def.params ? validate(def.params, req.params, "path") : undefined;
      const query = def.query ? validate(def.query, req.query, "query") : undefined;
      let body: unknown;
      if (def.body) {
        const hasBody =
          Number(req.headers["content-length"] ?? 0) > 0 || req.headers["transfer-encoding"] !== undefined;
        if (hasBody && !isJsonContentType(req)) {
          throw unsupportedMediaType(`send application/json (got ${req.headers["content-type"] ?? "no content type"})`);
        }
        if (hasBody) {
          await new Promise<void>((resolve, reject) =>
            json(req, res, (err?: unknown) => (err ? reject(err) : resolve())),
          );
        }
        body = validate(def.body, hasBody ? req.body : {}, "body");
      }
      const reply = await def.handle({ params, query, body, auth, req, res });
      if (!reply) return;
      for (const [k, v] of Object.entries(reply.headers ?? {})) res.setHeader(k, v);
      if (reply.body === undefined) res.status(reply.status).end();
      else res.status(reply.status).json(reply.body);
    } catch (err) {
      next(err);
    }
  };
  return handler;
}

/** One route in the OpenAPI document, with the problem answers every route may give. */
// biome-ignore lint/suspicious/noExplicitAny: heterogeneous route list
function registerRoute(registry: OpenAPIRegistry, def: RouteDef<any, any, any>, bearer: string): void {
  const responses: Record<string, object> = {};
  for (const [status, r] of Object.entries(def.responses)) {
    responses[status] = r.schema
      ? { description: r.description, content: { [r.contentType ?? "application/json"]: { schema: r.schema } } }
      : { description: r.description };
  }
  const problem = { content: { "application/problem+json": { schema: problemSchema } } };
  if (def.scopes !== "public") {
    responses["401"] ??= { description: "missing or unknown API key", ...problem };
    responses["403"] ??= { description: `the key lacks the scope (${def.scopes.join(" or ")})`, ...problem };
    responses["429"] ??= {
      description: "this API key sent more requests than its rate allows (Retry-After, RateLimit headers)",
      ...problem,
    };
  }
  if (def.params || def.query || def.body) responses["400"] ??= { description: "malformed request", ...problem };
  responses["503"] ??= { description: "database unavailable (with Retry-After)", ...problem };
  registry.registerPath({
    method: def.method,
    path: def.path,
    summary: def.summary,
    tags: def.tags,
    security: def.scopes === "public" ? [] : [{ [bearer]: [] }],
    request: {
      params: def.params as z.ZodObject | undefined,
      query: def.query as z.ZodObject | undefined,
      body: def.body
        ? { content: { "application/json": { schema: def.body } } }
        : def.rawBody
          ? { description: def.rawBody.description, content: def.rawBody.content }
          : undefined,
    },
    responses,
  });
}
