-- Insert the unique jobs of one shape unless a duplicate exists (Oban 2.23 OSS semantics), all
-- in one statement. A duplicate is a job in one of the unique states, within the period (by
-- inserted_at or scheduled_at), matching every unique field: queue and worker by equality,
-- args/meta by JSONB containment of the compared keys, or equality when no keys are given (or
-- none of them are present). A found duplicate may have the fields the new job sets replaced,
-- by its state. The shape's options are parameters (planned for their values: the statement is
-- never prepared), each job's own values a row of one JSON document.
-- The caller holds the advisory locks (unique_lock_*.sql), taken in an earlier statement so this
-- statement's snapshot sees every job a racing insert committed. Ids are drawn before the insert
-- so each inserted row is matched to its input row by id, not by order.
WITH rows AS MATERIALIZED (
    SELECT *
    FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(
        ord int, state text, queue text, worker text, args jsonb, meta jsonb, tags text[],
        max_attempts int, priority int, scheduled_at timestamp,
        args_match jsonb, args_exact boolean, meta_match jsonb, meta_exact boolean,
        replace jsonb
    )
),
existing AS MATERIALIZED (
    SELECT e.*, r.ord
    FROM rows AS r
    CROSS JOIN LATERAL (
        SELECT j.*
        FROM {prefix}.oban_jobs AS j
        WHERE j.state = ANY(%(states)s::{prefix}.oban_job_state[])
          -- A job this very call inserted after this one is no duplicate of it (one by one).
          AND NOT EXISTS (
              SELECT 1
              FROM unnest(%(call_ids)s::bigint[], %(call_ords)s::int[]) AS c(id, ord)
              WHERE c.id = j.id AND c.ord > r.ord
          )
          AND (NOT %(by_worker)s OR j.worker = r.worker)
          AND (NOT %(by_queue)s OR j.queue = r.queue)
          AND (NOT %(by_args)s
               OR (j.args @> r.args_match AND (NOT r.args_exact OR j.args <@ r.args_match)))
          AND (NOT %(by_meta)s
               OR (j.meta @> r.meta_match AND (NOT r.meta_exact OR j.meta <@ r.meta_match)))
          AND (%(period)s::float8 IS NULL
               OR (CASE WHEN %(by_scheduled_at)s THEN j.scheduled_at ELSE j.inserted_at END)
                  >= timezone('UTC', now()) - make_interval(secs => %(period)s::float8))
        LIMIT 1
    ) AS e
),
replaced AS (
    UPDATE {prefix}.oban_jobs AS j
    SET args = CASE WHEN f.fields ? 'args' THEN r.args ELSE j.args END,
        max_attempts = CASE WHEN f.fields ? 'max_attempts'
                            THEN r.max_attempts ELSE j.max_attempts END,
        meta = CASE WHEN f.fields ? 'meta' THEN r.meta ELSE j.meta END,
        priority = CASE WHEN f.fields ? 'priority' THEN r.priority ELSE j.priority END,
        queue = CASE WHEN f.fields ? 'queue' THEN r.queue ELSE j.queue END,
        scheduled_at = CASE WHEN f.fields ? 'scheduled_at'
                            THEN COALESCE(r.scheduled_at, j.scheduled_at)
                            ELSE j.scheduled_at END,
        tags = CASE WHEN f.fields ? 'tags' THEN r.tags ELSE j.tags END,
        worker = CASE WHEN f.fields ? 'worker' THEN r.worker ELSE j.worker END
    FROM existing AS x
    JOIN rows AS r ON r.ord = x.ord
    CROSS JOIN LATERAL (
        SELECT COALESCE(r.replace -> x.state::text, '[]'::jsonb)
    ) AS f(fields)
    WHERE j.id = x.id
      AND jsonb_array_length(f.fields) > 0
    RETURNING j.*, x.ord
),
fresh AS MATERIALIZED (
    SELECT r.*, nextval(s.seq) AS id
    FROM rows AS r,
         (SELECT pg_get_serial_sequence(%(table)s, 'id')::regclass AS seq) AS s
    WHERE NOT EXISTS (SELECT 1 FROM existing AS x WHERE x.ord = r.ord)
),
inserted AS (
    INSERT INTO {prefix}.oban_jobs
        (id, state, queue, worker, args, meta, tags, max_attempts, priority, scheduled_at)
    SELECT f.id,
           f.state::{prefix}.oban_job_state,
           f.queue,
           f.worker,
           f.args,
           f.meta,
           f.tags,
           f.max_attempts,
           f.priority,
           COALESCE(f.scheduled_at, timezone('UTC', now()))
    FROM fresh AS f
    RETURNING *
),
result AS (
    SELECT i.*, f.ord, false AS conflict
    FROM inserted AS i
    JOIN fresh AS f ON f.id = i.id
    UNION ALL
    SELECT r.*, true AS conflict
    FROM replaced AS r
    UNION ALL
    SELECT x.*, true AS conflict
    FROM existing AS x
    WHERE NOT EXISTS (SELECT 1 FROM replaced AS r WHERE r.ord = x.ord)
),
notified AS (
    -- As Elixir, a duplicate that is available pokes its queue too. Byte for byte Elixir's
    -- payload: {{"queue":"<queue>"}} (Jason writes no spaces).
    SELECT pg_notify(%(channel)s, '{{"queue":' || to_json(q.queue)::text || '}}')
    FROM (SELECT DISTINCT queue FROM result WHERE state = 'available') AS q
)
SELECT result.*
FROM result, (SELECT count(*) FROM notified) AS sent
