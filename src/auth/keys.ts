// API keys: random secrets handed out once, stored only as SHA-256 hashes, compared in constant time.
import { randomBytes, timingSafeEqual } from "node:crypto";
import { LRUCache } from "lru-cache";
import { type Clock, systemClock } from "../clock.js";
import type { Queryable } from "../db/types.js";
import { AppError, notFound } from "../errors.js";
import { hashKey } from "./hash.js";
import { findPortalToken, PORTAL_TOKEN_PREFIX } from "./portalTokens.js";
import type { Auth, Scope } from "./types.js";

const CACHE_TTL_MS = 5_000;
const CACHE_MAX = 10_000;

function generateKey(): { id: string; key: string } {
  return { id: `key_${randomBytes(9).toString("base64url")}`, key: `tally_${randomBytes(32).toString("base64url")}` };
}

interface KeyRow {
  id: string;
  key_hash: Buffer;
  scopes: Scope[];
  customer_id: string | null;
}

const unauthorized = (detail: string) =>
  new AppError(401, "unauthorized", detail, { headers: { "WWW-Authenticate": 'Bearer realm="tally"' } });

const tokenExpired = () =>
  new AppError(401, "token_expired", "this portal token has expired; ask for a new one", {
    headers: { "WWW-Authenticate": 'Bearer realm="tally", error="invalid_token"' },
  });

export class ApiKeys {
  // Verified API keys (never portal tokens) are remembered briefly so a hot path (entitlements, ingest) costs no
  // query per request.
  // A revocation is immediate in this process and takes effect in others within CACHE_TTL_MS.
  readonly #cache = new LRUCache<string, Auth>({ max: CACHE_MAX, ttl: CACHE_TTL_MS });

  constructor(
    private readonly db: Queryable,
    private readonly clock: Clock = systemClock,
  ) {}

  async create(scopes: Scope[], customer: string | null): Promise<{ id: string; key: string }> {
    const { id, key } = generateKey();
    await this.db.query("INSERT INTO api_keys (id, key_hash, scopes, customer_id) VALUES ($1, $2, $3, $4)", [
      id,
      hashKey(key),
      scopes,
      customer,
    ]);
    return { id, key };
  }

  async revoke(id: string): Promise<void> {
    const { rowCount } = await this.db.query(
      "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1",
      [id],
    );
    if (rowCount === 0) throw notFound(`no API key with id ${id}`);
    for (const [k, v] of this.#cache.entries()) if (v.keyId === id) this.#cache.delete(k);
  }

  async count(): Promise<number> {
    const { rows } = await this.db.query<{ n: string }>("SELECT count(*) AS n FROM api_keys WHERE revoked_at IS NULL");
    return Number(rows[0]?.n ?? 0);
  }

  /** Makes sure `key` is a valid admin key (TALLY_ADMIN_KEY). */
  async ensureAdminKey(key: string): Promise<void> {
    await this.db.query(
      `INSERT INTO api_keys (id, key_hash, scopes) VALUES ('key_env_admin', $1, ARRAY['admin'])
       ON CONFLICT (id) DO UPDATE SET key_hash = EXCLUDED.key_hash, scopes = EXCLUDED.scopes, revoked_at = NULL`,
      [hashKey(key)],
    );
  }

  /** A key verified within the last few seconds, without any I/O (the entitlement fast path); else undefined. */
  cachedAuth(header: string | undefined): Auth | undefined {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "");
    if (!match?.[1]) return undefined;
    return this.#cache.get(hashKey(match[1]).toString("base64"));
  }

  async authenticate(header: string | undefined): Promise<Auth> {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "");
    if (!match?.[1]) throw unauthorized("send an API key as 'Authorization: Bearer <key>'");
    const hash = hashKey(match[1]);
    const cacheKey = hash.toString("base64");
    const cached = this.#cache.get(cacheKey);
    if (cached) return cached;
    if (match[1].startsWith(PORTAL_TOKEN_PREFIX)) return this.#portal(hash);
    const { rows } = await this.db.query<KeyRow>(
      "SELECT id, key_hash, scopes, customer_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
      [hash],
    );
    const row = rows[0];
    if (!row || !timingSafeEqual(Buffer.from(row.key_hash), hash)) throw unauthorized("unknown or revoked API key");
    const auth: Auth = { keyId: row.id, scopes: row.scopes, customer: row.customer_id };
    this.#cache.set(cacheKey, auth);
    return auth;
  }

  /**
   * A portal token authenticates as a read key bound to its customer, until it expires or is revoked. It is looked
   * up on every request, never remembered: a revocation (a deleted row) holds at once in every process, and a
   * customer view's few reads can afford the indexed lookup.
   */
  async #portal(hash: Buffer): Promise<Auth> {
    const row = await findPortalToken(this.db, hash);
    if (!row || !timingSafeEqual(Buffer.from(row.token_hash), hash))
      throw unauthorized("unknown or revoked portal token");
    const auth: Auth = { keyId: row.id, scopes: ["read"], customer: row.customer_id, expiresAt: row.expires_at };
    if (row.expires_at.getTime() <= this.clock.now().getTime()) throw tokenExpired();
    return auth;
  }
}

export function requireScope(auth: Auth, allowed: Scope[]): void {
  if (auth.scopes.includes("admin")) return;
  if (allowed.some((s) => auth.scopes.includes(s))) return;
  throw new AppError(403, "insufficient_scope", `this API key needs the ${allowed.join(" or ")} scope`);
}

/** A key bound to a customer sees only that customer; for any other the answer is 404 (existence not revealed). */
export function assertCustomerVisible(auth: Auth | null, customer: string): void {
  if (auth?.customer && auth.customer !== customer) throw notFound(`no customer ${customer}`);
}
