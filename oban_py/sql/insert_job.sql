-- Insert one job: the single-row form of insert_jobs.sql (same defaults, same notification),
-- without the unnest, ordering and dedup machinery that a lone row does not need.
WITH inserted AS (
    INSERT INTO {prefix}.oban_jobs
        (state, queue, worker, args, meta, tags, max_attempts, priority, scheduled_at)
    VALUES (
        %(state)s::{prefix}.oban_job_state,
        %(queue)s,
        %(worker)s,
        %(args)s::jsonb,
        %(meta)s::jsonb,
        %(tags)s::text[],
        %(max_attempts)s::int,
        %(priority)s::int,
        COALESCE(%(scheduled_at)s::timestamp, timezone('UTC', now()))
    )
    RETURNING *
),
notified AS (
    -- Byte for byte Elixir's payload: {{"queue":"<queue>"}} (Jason writes no spaces).
    SELECT pg_notify(%(channel)s, '{{"queue":' || to_json(i.queue)::text || '}}')
    FROM inserted AS i
    WHERE i.state = 'available'
)
SELECT inserted.*
FROM inserted, (SELECT count(*) FROM notified) AS sent
