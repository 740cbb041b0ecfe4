-- Insert one job: the single-row form of insert_jobs.sql (same defaults, same notification),
-- without the unnest, ordering and dedup machinery that a lone row does not need, and without a
-- CTE: the notification is sent from RETURNING, once, only for an available job.
-- Only the columns the server chose come back; the client fills in the rest from the job.
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
RETURNING id,
          inserted_at,
          scheduled_at,
          -- Byte for byte Elixir's payload: {{"queue":"<queue>"}} (Jason writes no spaces).
          CASE WHEN state = 'available'
               THEN pg_notify(%(channel)s, '{{"queue":' || to_json(queue)::text || '}}')
          END AS notified
