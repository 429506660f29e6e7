-- The dedupe key store (src/ingest/keys.ts, docs/ingest.md#the-key-store). A key is the first 128 bits of
-- SHA-256(customer, NUL, id), as two 64-bit integers h (indexed) and h2, with the second of the event's timestamp
-- (t, for receipts) and of its arrival (r), both counted from 2000-01-01 UTC. Keys live in three tiers:
--   event_keys_hot_N  the current hot table takes every new key; its primary key on h is the arbiter between
--                     concurrent writers. It is small: rotated daily, or earlier once it grows past a size.
--   the other hot     sealed at the last rotation, read-only, probed until merged into the cold tier.
--   event_keys_cold_N one row per range of hashes (bucket: h >> the table's shift, chosen when it is built so
--                     that a row holds 24–48 keys), its keys packed: h as 8 big-endian bytes each in hb (a
--                     bytea: position() finds a key in it faster than = ANY on an array), h2, t, r in arrays
--                     (element i of each array belongs to bytes 8i-7…8i of hb): ~30 bytes per key. Read-only for ingest; a merge builds the other cold table and flips to it.
-- event_key_state says which hot and cold tables are current. Ingest reads it holding a shared advisory lock
-- for its whole transaction (event_key_lock); a rotation or flip changes it holding the same lock exclusively,
-- so it waits for every open ingest transaction and a key committed before it is seen by every one after it.
-- event_key_collisions holds, exactly by (customer_id, event_id), the rare keys whose h another key already has.

CREATE FUNCTION event_key_digest(customer_id text, event_id text) RETURNS bytea
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  AS $$ SELECT sha256(convert_to(customer_id, 'UTF8') || '\x00'::bytea || convert_to(event_id, 'UTF8')) $$;

-- Bytes part*8 … part*8+7 of a digest or of a cold row's hb, big-endian, as a signed 64-bit integer.
CREATE FUNCTION event_key_part(digest bytea, part integer) RETURNS bigint
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  AS $$ SELECT ('x' || encode(substr(digest, part * 8 + 1, 8), 'hex'))::bit(64)::bigint $$;

-- Key i (1-based) of a cold row's hb.
CREATE FUNCTION event_key_at(hb bytea, i integer) RETURNS bigint
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  AS $$ SELECT event_key_part(hb, i - 1) $$;

CREATE FUNCTION event_key_hash(customer_id text, event_id text) RETURNS bigint
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  AS $$ SELECT event_key_part(event_key_digest(customer_id, event_id), 0) $$;

CREATE FUNCTION event_key_hash2(customer_id text, event_id text) RETURNS bigint
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  AS $$ SELECT event_key_part(event_key_digest(customer_id, event_id), 1) $$;

CREATE FUNCTION event_key_second(at timestamptz) RETURNS integer
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  AS $$ SELECT (floor(extract(epoch FROM at)) - 946684800)::integer $$;

CREATE TABLE event_keys_hot_0 (
  h  bigint  NOT NULL,
  h2 bigint  NOT NULL,
  t  integer NOT NULL,
  r  integer NOT NULL,
  CONSTRAINT event_keys_hot_0_pkey PRIMARY KEY (h)
);
CREATE TABLE event_keys_hot_1 (
  h  bigint  NOT NULL,
  h2 bigint  NOT NULL,
  t  integer NOT NULL,
  r  integer NOT NULL,
  CONSTRAINT event_keys_hot_1_pkey PRIMARY KEY (h)
);

CREATE TABLE event_keys_cold_0 (
  bucket integer   PRIMARY KEY,
  hb     bytea     NOT NULL,
  h2s    bigint[]  NOT NULL,
  ts     integer[] NOT NULL,
  rs     integer[] NOT NULL
);
CREATE TABLE event_keys_cold_1 (
  bucket integer   PRIMARY KEY,
  hb     bytea     NOT NULL,
  h2s    bigint[]  NOT NULL,
  ts     integer[] NOT NULL,
  rs     integer[] NOT NULL
);

CREATE TABLE event_key_collisions (
  customer_id text    NOT NULL,
  event_id    text    NOT NULL,
  h           bigint  NOT NULL,
  t           integer NOT NULL,
  r           integer NOT NULL,
  PRIMARY KEY (customer_id, event_id)
);
CREATE INDEX event_key_collisions_h ON event_key_collisions (h);

CREATE TABLE event_key_state (
  only_row  boolean     PRIMARY KEY DEFAULT true CHECK (only_row),
  hot       smallint    NOT NULL DEFAULT 0 CHECK (hot IN (0, 1)),
  cold      smallint    NOT NULL DEFAULT 0 CHECK (cold IN (0, 1)),
  hot_since timestamptz NOT NULL DEFAULT now(),
  -- The other hot table holds keys not yet merged into the cold tier.
  sealed    boolean     NOT NULL DEFAULT false,
  -- The other cold table holds the merge of the current one and the sealed hot table, ready to flip to.
  built     boolean     NOT NULL DEFAULT false,
  -- A cold table's bucket of key h is h >> its shift (event_key_shift of the keys it was built for).
  shift_0   smallint    NOT NULL DEFAULT 58,
  shift_1   smallint    NOT NULL DEFAULT 58,
  -- How many keys each cold table was built with.
  keys_0    bigint      NOT NULL DEFAULT 0,
  keys_1    bigint      NOT NULL DEFAULT 0
);
INSERT INTO event_key_state DEFAULT VALUES;

-- Taken first by every transaction that writes or reads keys: the shared advisory lock, then (a new snapshot:
-- the function is volatile) the current tables.
CREATE FUNCTION event_key_lock(lock_key bigint) RETURNS TABLE (hot smallint, cold smallint, shift smallint)
  LANGUAGE plpgsql VOLATILE
  AS $$
BEGIN
  PERFORM pg_advisory_xact_lock_shared(lock_key);
  RETURN QUERY SELECT s.hot, s.cold, CASE s.cold WHEN 0 THEN s.shift_0 ELSE s.shift_1 END FROM event_key_state s;
END $$;

-- The shift that packs `keys` keys 24–48 to a bucket (at least 64 buckets, at most 2^30).
CREATE FUNCTION event_key_shift(keys bigint) RETURNS smallint
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  AS $$ SELECT (64 - least(30, greatest(6, floor(log(2, greatest(keys, 1) / 24.0)))))::smallint $$;

-- The second halves (h2) and seconds (t) of the stored keys whose h is `key`, received at or after `cut`, from
-- every table (a table not current holds only copies of current keys, or nothing): what tells a key from another
-- with the same h, and where a receipt finds the event.
CREATE FUNCTION event_key_matches(key bigint, cut integer) RETURNS TABLE (h2 bigint, t integer)
  LANGUAGE sql STABLE
  AS $$
  SELECT k.h2, k.t FROM event_keys_hot_0 k WHERE k.h = key AND k.r >= cut
  UNION ALL SELECT k.h2, k.t FROM event_keys_hot_1 k WHERE k.h = key AND k.r >= cut
  UNION ALL SELECT c.h2s[i], c.ts[i] FROM event_keys_cold_0 c CROSS JOIN LATERAL generate_subscripts(c.rs, 1) AS i
    WHERE c.bucket = (key >> (SELECT shift_0 FROM event_key_state))::integer AND position(int8send(key) IN c.hb) > 0
      AND substr(c.hb, i * 8 - 7, 8) = int8send(key) AND c.rs[i] >= cut
  UNION ALL SELECT c.h2s[i], c.ts[i] FROM event_keys_cold_1 c CROSS JOIN LATERAL generate_subscripts(c.rs, 1) AS i
    WHERE c.bucket = (key >> (SELECT shift_1 FROM event_key_state))::integer AND position(int8send(key) IN c.hb) > 0
      AND substr(c.hb, i * 8 - 7, 8) = int8send(key) AND c.rs[i] >= cut
$$;

-- Every stored key once, for diagnostics and tests (tier: hot, sealed, cold, collision).
CREATE VIEW event_key_entries AS
  SELECT 'hot'::text AS tier, k.h, k.h2, k.t, k.r FROM event_keys_hot_0 k, event_key_state s WHERE s.hot = 0
  UNION ALL SELECT 'hot', k.h, k.h2, k.t, k.r FROM event_keys_hot_1 k, event_key_state s WHERE s.hot = 1
  UNION ALL SELECT 'sealed', k.h, k.h2, k.t, k.r FROM event_keys_hot_0 k, event_key_state s WHERE s.hot = 1 AND s.sealed
  UNION ALL SELECT 'sealed', k.h, k.h2, k.t, k.r FROM event_keys_hot_1 k, event_key_state s WHERE s.hot = 0 AND s.sealed
  UNION ALL SELECT 'cold', event_key_at(c.hb, i), c.h2s[i], c.ts[i], c.rs[i]
    FROM event_keys_cold_0 c CROSS JOIN LATERAL generate_subscripts(c.rs, 1) AS i, event_key_state s
    WHERE s.cold = 0
  UNION ALL SELECT 'cold', event_key_at(c.hb, i), c.h2s[i], c.ts[i], c.rs[i]
    FROM event_keys_cold_1 c CROSS JOIN LATERAL generate_subscripts(c.rs, 1) AS i, event_key_state s
    WHERE s.cold = 1
  UNION ALL SELECT 'collision', k.h, event_key_hash2(k.customer_id, k.event_id), k.t, k.r FROM event_key_collisions k;

-- The keys stored so far move into the cold tier, exactly: writers of the old table are waited for and then kept
-- out (a process of the previous version fails its batch, which its client sends again), and the table goes.
LOCK TABLE event_keys IN SHARE MODE;
UPDATE event_key_state SET keys_0 = (SELECT count(*) FROM event_keys);
UPDATE event_key_state SET shift_0 = event_key_shift(keys_0);
-- One aggregate step takes each input row for every aggregate in turn: the packed columns stay aligned.
INSERT INTO event_keys_cold_0 (bucket, hb, h2s, ts, rs)
SELECT (h >> (SELECT shift_0 FROM event_key_state))::integer, string_agg(int8send(h), ''::bytea), array_agg(h2),
       array_agg(t), array_agg(r)
FROM (
  SELECT event_key_part(d, 0) AS h, event_key_part(d, 1) AS h2, t, r
  FROM (
    SELECT event_key_digest(customer_id, event_id) AS d, event_key_second(ts) AS t, event_key_second(received_at) AS r
    FROM event_keys
  ) AS digests
) AS k
GROUP BY 1;
DROP TABLE event_keys;

-- Customers with events received since a time (limits' incremental pass) were found through event_keys; events
-- are appended in arrival order, so a BRIN on received_at finds them as well.
CREATE INDEX usage_events_received_at ON usage_events USING brin (received_at);
