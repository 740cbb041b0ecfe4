-- One Python claim at a time per flow-limited queue (oban_py/flow): counting the capacity left
-- and taking it happen under this lock, held until the claim's transaction ends.
SELECT pg_advisory_xact_lock(hashtextextended(%(key)s, 0))
