-- Retry the failed jobs of one workflow (cancelled or discarded): one that ran, or that waits for
-- nothing, becomes available as Elixir's retry_all_jobs makes it (enough max_attempts for one
-- more attempt, finished timestamps cleared); one that never ran and has dependencies (failed by
-- its policy, or cancelled while held) is held again, to be judged anew once its dependencies
-- finish. The releasers are woken on commit.
WITH targets AS (
    SELECT id
    FROM {prefix}.oban_jobs
    WHERE meta @> jsonb_build_object('workflow_id', %(workflow_id)s::text)
      AND state IN ('cancelled', 'discarded')
    ORDER BY id
    FOR UPDATE
),
moved AS (
    UPDATE {prefix}.oban_jobs AS j
    SET state = (CASE WHEN j.attempt = 0
                          AND jsonb_typeof(j.meta->'deps') = 'array'
                          AND jsonb_array_length(j.meta->'deps') > 0
                      THEN 'suspended' ELSE 'available' END)::{prefix}.oban_job_state,
        max_attempts = GREATEST(j.max_attempts, j.attempt + 1),
        scheduled_at = timezone('UTC', now()),
        completed_at = NULL,
        cancelled_at = NULL,
        discarded_at = NULL
    FROM targets AS t
    WHERE j.id = t.id
    RETURNING j.id, j.state::text AS state, j.queue
),
notified AS (
    SELECT pg_notify(%(insert_channel)s, '{{"queue":' || to_json(q.queue)::text || '}}')
    FROM (SELECT DISTINCT m.queue FROM moved AS m WHERE m.state = 'available') AS q
    UNION ALL
    SELECT pg_notify(%(workflow_channel)s, %(wake)s)
    FROM (SELECT 1 FROM moved AS m WHERE m.state = 'suspended' LIMIT 1) AS held
)
SELECT m.id, m.state
FROM moved AS m, (SELECT count(*) FROM notified) AS sent
ORDER BY m.id
