-- Claim up to %(demand)s available jobs of one queue for one producer, as Elixir's Basic engine
-- does: the materialized CTE is an optimization fence so the planner cannot re-run the LIMITed
-- subquery per row (which could update more rows than asked), and the attempt < max_attempts
-- guard keeps a row from ever exceeding its attempts.
WITH subset AS MATERIALIZED (
    SELECT id
    FROM {prefix}.oban_jobs
    WHERE state = 'available'
      AND queue = %(queue)s
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
