-- drain_queue(scoped=True): fetch_jobs.sql limited to the jobs a testing client inserted
-- (%(only)s), so tests sharing a database never claim each other's jobs.
WITH clock AS (SELECT timezone('UTC', now()) AS at),
subset AS MATERIALIZED (
    SELECT id
    FROM {prefix}.oban_jobs
    WHERE state = 'available'
      AND queue = %(queue)s
      AND id = ANY(%(only)s::bigint[])
    ORDER BY priority, scheduled_at, id
    LIMIT %(demand)s
    FOR UPDATE SKIP LOCKED
)
{claim_update}
