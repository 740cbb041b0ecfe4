-- Cancel jobs in any state but cancelled, completed and discarded, executing included (as
-- Elixir's cancel_all_jobs), then ask every node to kill the ones that were executing
-- (cancel_targets.sql).
WITH targets AS (
    SELECT id, state
    FROM {prefix}.oban_jobs
    WHERE id = ANY(%(ids)s::bigint[])
      AND state NOT IN ('cancelled', 'completed', 'discarded')
    FOR UPDATE
),
{cancel_targets}
