-- Portal tokens: short-lived, read-only bearer tokens bound to one customer, minted for the embeddable customer view
-- (POST /v1/customers/{id}/portal-tokens). Like API keys, only a SHA-256 hash of the token is stored.
CREATE TABLE portal_tokens (
  id          text PRIMARY KEY,
  token_hash  bytea NOT NULL UNIQUE,
  customer_id text NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
  expires_at  timestamptz NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);

-- Expired tokens are pruned by expiry; lookups go by hash (the UNIQUE index).
CREATE INDEX portal_tokens_expires_at ON portal_tokens (expires_at);
