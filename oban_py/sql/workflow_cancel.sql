-- Cancel every unfinished job of one workflow, executing and held ones included, then ask every
-- node to kill the executing ones (cancel_targets.sql).
WITH targets AS (
    SELECT id, state
    FROM {prefix}.oban_jobs
    WHERE meta @> jsonb_build_object('workflow_id', %(workflow_id)s::text)
      AND state NOT IN ('cancelled', 'completed', 'discarded')
    ORDER BY id
    FOR UPDATE
),
{cancel_targets}
