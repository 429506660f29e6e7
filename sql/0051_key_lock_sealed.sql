-- event_key_lock also says whether the other hot table is sealed (holds keys the cold table does not have yet).
-- When it is not, ingest leaves that table alone: it holds only copies, and a transaction that probed it would hold a
-- lock on it that the TRUNCATE emptying it after a flip has to wait for (with ingest queueing behind that wait).
DROP FUNCTION event_key_lock(bigint);
CREATE FUNCTION event_key_lock(lock_key bigint)
  RETURNS TABLE (hot smallint, cold smallint, shift smallint, sealed boolean)
  LANGUAGE plpgsql VOLATILE
  AS $$
BEGIN
  PERFORM pg_advisory_xact_lock_shared(lock_key);
  RETURN QUERY SELECT s.hot, s.cold, CASE s.cold WHEN 0 THEN s.shift_0 ELSE s.shift_1 END, s.sealed
    FROM event_key_state s;
END $$;
