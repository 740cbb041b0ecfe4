-- drain_queue(scoped=True): fetch_jobs.sql limited to the jobs a testing client inserted
-- (%(only)s), so tests sharing a database never claim each other's jobs.
WITH subset AS MATERIALIZED (
    SELECT id
    FROM {prefix}.oban_jobs
    WHERE state = 'available'
      AND queue = %(queue)s
      AND id = ANY(%(only)s::bigint[])
    ORDER BY priority, scheduled_at, id
    LIMIT %(demand)s
    FOR UPDATE SKIP LOCKED
)
UPDATE {prefix}.oban_jobs AS j
SET state = 'executing',
    attempted_at = timezone('UTC', now()),
    attempted_by = ARRAY[%(node)s, %(uuid)s]::text[],
    attempt = j.attempt + 1
FROM subset
WHERE j.id = subset.id
  AND j.attempt < j.max_attempts
RETURNING j.*
