-- Serializes cron inserts of one entry across every node, so a leader change in the middle of a
-- minute can never insert the same slot twice.
SELECT pg_advisory_xact_lock(hashtextextended(%(key)s, 0))
