-- Insert one job: the single-row form of insert_jobs.sql (same defaults, same notification),
-- without the unnest, ordering and dedup machinery that a lone row does not need, and without a
-- CTE: the notification is sent from RETURNING, once, only for an available job.
-- Only the columns the server chose come back; the client fills in the rest from the job.
-- Parameters are positional (the column order above, the schedule_in delay, then the channel): a lone insert is the
-- hot path, and a tuple spares psycopg mapping names to positions on every call.
INSERT INTO {prefix}.oban_jobs
    (state, queue, worker, args, meta, tags, max_attempts, priority, scheduled_at)
VALUES (
    %s::{prefix}.oban_job_state,
    %s,
    %s,
    %s::jsonb,
    %s::jsonb,
    %s::text[],
    %s::int,
    %s::int,
    -- A job built with schedule_in runs that many microseconds after the server's now, not
    -- after the client's.
    COALESCE(%s::timestamp, timezone('UTC', now()) + coalesce(%s::bigint, 0) * interval '1 microsecond')
)
RETURNING id,
          inserted_at,
          scheduled_at,
          -- Byte for byte Elixir's payload: {{"queue":"<queue>"}} (Jason writes no spaces).
          CASE WHEN state = 'available'
               THEN pg_notify(%s, '{{"queue":' || to_json(queue)::text || '}}')
          END AS notified
