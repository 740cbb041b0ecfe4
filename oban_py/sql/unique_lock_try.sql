-- Try the advisory lock of every unique job of a call without waiting (Elixir's
-- pg_try_advisory_xact_lock): inside a caller's transaction, which may hold other locks, waiting
-- could deadlock. Returns the keys another transaction holds; their jobs are reported as
-- conflicts and not inserted.
SELECT array_agg(k) FILTER (WHERE NOT pg_try_advisory_xact_lock(k))
FROM unnest(%(keys)s::bigint[]) AS k
