-- Serialise concurrent inserts of the same unique job until the enclosing transaction ends.
SELECT pg_advisory_xact_lock(%(key)s)
