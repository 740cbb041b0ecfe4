-- Insert one unique job unless a duplicate exists (Oban 2.23 OSS semantics): a job in one of
-- the unique states, within the period (by inserted_at or scheduled_at), matching every unique
-- field. args/meta match by JSONB containment of the compared keys, or equality when no keys
-- are given (or none of them are present). A found duplicate may have fields replaced by its
-- state. The caller holds the advisory lock (unique_lock.sql), taken in an earlier statement so
-- this statement's snapshot sees any job a racing insert committed.
WITH existing AS (
    SELECT j.*
    FROM {prefix}.oban_jobs AS j
    WHERE j.state = ANY(%(states)s::{prefix}.oban_job_state[])
      AND (NOT %(by_worker)s OR j.worker = %(worker)s)
      AND (NOT %(by_queue)s OR j.queue = %(queue)s)
      AND (NOT %(by_args)s
           OR (j.args @> %(args_match)s::jsonb
               AND (NOT %(args_exact)s OR j.args <@ %(args_match)s::jsonb)))
      AND (NOT %(by_meta)s
           OR (j.meta @> %(meta_match)s::jsonb
               AND (NOT %(meta_exact)s OR j.meta <@ %(meta_match)s::jsonb)))
      AND (%(period)s::float8 IS NULL
           OR (CASE WHEN %(by_scheduled_at)s THEN j.scheduled_at ELSE j.inserted_at END)
              >= timezone('UTC', now()) - make_interval(secs => %(period)s::float8))
    LIMIT 1
),
replaced AS (
    UPDATE {prefix}.oban_jobs AS j
    SET args = CASE WHEN r.fields ? 'args' THEN %(args)s::jsonb ELSE j.args END,
        max_attempts = CASE WHEN r.fields ? 'max_attempts'
                            THEN %(max_attempts)s::int ELSE j.max_attempts END,
        meta = CASE WHEN r.fields ? 'meta' THEN %(meta)s::jsonb ELSE j.meta END,
        priority = CASE WHEN r.fields ? 'priority' THEN %(priority)s::int ELSE j.priority END,
        queue = CASE WHEN r.fields ? 'queue' THEN %(queue)s ELSE j.queue END,
        scheduled_at = CASE WHEN r.fields ? 'scheduled_at'
                            THEN COALESCE(%(scheduled_at)s::timestamp, j.scheduled_at)
                            ELSE j.scheduled_at END,
        tags = CASE WHEN r.fields ? 'tags'
                    THEN ARRAY(SELECT jsonb_array_elements_text(%(tags)s::jsonb))
                    ELSE j.tags END,
        worker = CASE WHEN r.fields ? 'worker' THEN %(worker)s ELSE j.worker END
    FROM existing AS e,
         LATERAL (SELECT COALESCE(%(replace)s::jsonb -> e.state::text, '[]'::jsonb)) AS r(fields)
    WHERE j.id = e.id
      AND jsonb_array_length(r.fields) > 0
    RETURNING j.*
),
inserted AS (
    INSERT INTO {prefix}.oban_jobs
        (state, queue, worker, args, meta, tags, max_attempts, priority, scheduled_at)
    SELECT %(state)s::{prefix}.oban_job_state,
           %(queue)s,
           %(worker)s,
           %(args)s::jsonb,
           %(meta)s::jsonb,
           ARRAY(SELECT jsonb_array_elements_text(%(tags)s::jsonb)),
           %(max_attempts)s::int,
           %(priority)s::int,
           COALESCE(%(scheduled_at)s::timestamp, timezone('UTC', now()))
    WHERE NOT EXISTS (SELECT 1 FROM existing)
    RETURNING *
),
result AS (
    SELECT i.*, false AS conflict FROM inserted AS i
    UNION ALL
    SELECT r.*, true AS conflict FROM replaced AS r
    UNION ALL
    SELECT e.*, true AS conflict FROM existing AS e
    WHERE NOT EXISTS (SELECT 1 FROM replaced)
),
notified AS (
    -- As Elixir, a duplicate that is available pokes its queue too.
    SELECT pg_notify(%(channel)s, '{{"queue":' || to_json(result.queue)::text || '}}')
    FROM result
    WHERE result.state = 'available'
)
SELECT result.*
FROM result, (SELECT count(*) FROM notified) AS sent
