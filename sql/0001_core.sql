-- Customers, meters and API keys: the objects an operator sets up before any usage arrives.

CREATE TABLE customers (
  id                 text PRIMARY KEY CHECK (char_length(id) BETWEEN 1 AND 128),
  name               text,
  email              text,
  stripe_customer_id text,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE meters (
  key               text PRIMARY KEY CHECK (key ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$'),
  name              text NOT NULL,
  unit              text NOT NULL,
  aggregation       text NOT NULL CHECK (aggregation IN ('sum', 'count', 'max', 'last')),
  stripe_event_name text,
  -- Stripe meter event values must be whole numbers: usage is multiplied by this before sending.
  stripe_scale      numeric NOT NULL DEFAULT 1 CHECK (stripe_scale > 0),
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now()
);

-- Keys are stored only as SHA-256 hashes: they are 256-bit random secrets, so a slow hash adds nothing.
CREATE TABLE api_keys (
  id          text PRIMARY KEY,
  key_hash    bytea NOT NULL UNIQUE,
  scopes      text[] NOT NULL CHECK (scopes <@ ARRAY['admin', 'ingest', 'read'] AND cardinality(scopes) > 0),
  customer_id text,
  created_at  timestamptz NOT NULL DEFAULT now(),
  revoked_at  timestamptz
);
