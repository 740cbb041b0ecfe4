-- Cancel every unfinished job of one workflow, executing and held ones included, then ask every
-- node to kill the executing ones with Elixir's pkill signal (as job_cancel.sql).
WITH targets AS (
    SELECT id, state
    FROM {prefix}.oban_jobs
    WHERE meta @> jsonb_build_object('workflow_id', %(workflow_id)s::text)
      AND state NOT IN ('cancelled', 'completed', 'discarded')
    ORDER BY id
    FOR UPDATE
),
cancelled AS (
    UPDATE {prefix}.oban_jobs AS j
    SET state = 'cancelled',
        cancelled_at = timezone('UTC', now())
    FROM targets AS t
    WHERE j.id = t.id
    RETURNING j.id, t.state AS previous_state
),
signalled AS (
    SELECT pg_notify(%(channel)s, '{{"action":"pkill","job_id":' || c.id::text || '}}')
    FROM cancelled AS c
    WHERE c.previous_state = 'executing'
)
SELECT c.id, c.previous_state::text AS previous_state
FROM cancelled AS c, (SELECT count(*) FROM signalled) AS sent
ORDER BY c.id
