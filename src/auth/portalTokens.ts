// Portal tokens: short-lived, read-only bearer tokens bound to one customer, for the embeddable customer view.
// A token is random, handed out once and stored only as a SHA-256 hash (as API keys are); it authenticates as a
// `read` key bound to its customer until it expires or is revoked (by its id), so it can never ingest nor read setup.
import { randomBytes } from "node:crypto";
import type { Queryable } from "../db/types.js";
import { hashKey } from "./hash.js";

/** Tokens carry their own prefix, so authentication knows which table to look in without a second query. */
export const PORTAL_TOKEN_PREFIX = "tally_pt_";
export const PORTAL_TTL_DEFAULT_SECONDS = 3600;
export const PORTAL_TTL_MAX_SECONDS = 86_400;

interface MintedPortalToken {
  id: string;
  token: string;
  customer: string;
  expiresAt: Date;
}

export async function mintPortalToken(
  db: Queryable,
  customer: string,
  ttlSeconds: number,
  now: Date,
): Promise<MintedPortalToken> {
  const id = `pt_${randomBytes(9).toString("base64url")}`;
  const token = `${PORTAL_TOKEN_PREFIX}${randomBytes(32).toString("base64url")}`;
  // Whole seconds, so the expires_at shown to the caller is exactly the instant stored.
  const expiresAt = new Date(Math.floor(now.getTime() / 1000) * 1000 + ttlSeconds * 1000);
  await db.query("INSERT INTO portal_tokens (id, token_hash, customer_id, expires_at) VALUES ($1, $2, $3, $4)", [
    id,
    hashKey(token),
    customer,
    expiresAt,
  ]);
  return { id, token, customer, expiresAt };
}

interface PortalTokenRow {
  id: string;
  token_hash: Buffer;
  customer_id: string;
  expires_at: Date;
}

export async function findPortalToken(db: Queryable, hash: Buffer): Promise<PortalTokenRow | undefined> {
  const { rows } = await db.query<PortalTokenRow>(
    "SELECT id, token_hash, customer_id, expires_at FROM portal_tokens WHERE token_hash = $1",
    [hash],
  );
  return rows[0];
}

/** Revokes a token by deleting it: the next request with it answers 401. False when there was no such token. */
export async function revokePortalToken(db: Queryable, id: string): Promise<boolean> {
  const { rowCount } = await db.query("DELETE FROM portal_tokens WHERE id = $1", [id]);
  return rowCount > 0;
}

/** Deletes tokens that expired before `before` (the prune-expired job); a day's margin keeps 401s explainable. */
export async function pruneExpiredTokens(db: Queryable, before: Date): Promise<number> {
  const { rowCount } = await db.query("DELETE FROM portal_tokens WHERE expires_at < $1", [before]);
  return rowCount;
}
