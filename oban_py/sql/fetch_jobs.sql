-- Claim up to %(demand)s available jobs of one queue for one producer, as Elixir's Basic engine
-- does: the materialized CTE is an optimization fence so the planner cannot re-run the LIMITed
-- subquery per row (which could update more rows than asked).
WITH clock AS (SELECT timezone('UTC', now()) AS at),
subset AS MATERIALIZED (
    SELECT id
    FROM {prefix}.oban_jobs
    WHERE state = 'available'
      AND queue = %(queue)s
    ORDER BY priority, scheduled_at, id
    LIMIT %(demand)s
    FOR UPDATE SKIP LOCKED
)
{claim_update}
