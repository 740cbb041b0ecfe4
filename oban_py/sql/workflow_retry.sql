-- Retry the failed jobs of one workflow (cancelled or discarded): one that ran, or that waits for
-- nothing, becomes available as Elixir's retry_all_jobs makes it (enough max_attempts for one
-- more attempt, finished timestamps cleared); one that never ran and has dependencies or waits
-- for a message it has not received (failed by its policy, timed out, or cancelled while held)
-- is held again, to be judged anew once its dependencies finish and its message comes. Its
-- message deadline (meta.wait_until) starts over, meta.wait_timeout seconds from now (left as it
-- was without that number). The releasers are woken on commit.
WITH targets AS (
    SELECT id,
           attempt = 0
           AND ((jsonb_typeof(meta->'deps') = 'array' AND jsonb_array_length(meta->'deps') > 0)
                OR (meta ? 'wait_message' AND NOT meta ? 'message')) AS held
    FROM {prefix}.oban_jobs
    WHERE meta @> jsonb_build_object('workflow_id', %(workflow_id)s::text)
      AND state IN ('cancelled', 'discarded')
    ORDER BY id
    FOR UPDATE
),
moved AS (
    UPDATE {prefix}.oban_jobs AS j
    SET state = (CASE WHEN t.held THEN 'suspended' ELSE 'available' END)::{prefix}.oban_job_state,
        meta = CASE WHEN t.held AND j.meta ? 'wait_message'
                         AND jsonb_typeof(j.meta->'wait_timeout') = 'number'
                    THEN j.meta || jsonb_build_object(
                        'wait_until', extract(epoch FROM now()) + (j.meta->'wait_timeout')::numeric
                    )
                    ELSE j.meta END,
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
