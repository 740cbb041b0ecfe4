-- Insert a batch of jobs in one round trip. The columns most jobs of a batch share (all but
-- args, for jobs built by one worker) come once per distinct set, a "shape"; the args come as
-- one JSON array, and each job's shape as the 1-based position in the shapes (NULL when there
-- is a single shape). The server parses each value once, not once per job: per-job rows of
-- every column cost it half of the whole insert. Unpacked in input order. Columns left out
-- (inserted_at, errors, attempted_*, *_at) take the table defaults, as Elixir's inserts do; a
-- NULL scheduled_at means "now", so it equals inserted_at.
-- Producers are told about every queue that gained an available job, in this same statement
-- (inside a transaction the NOTIFY is delivered on commit, and not at all on rollback).
WITH shapes AS (
    SELECT *
    FROM ROWS FROM (
        jsonb_to_recordset(%(shapes)s::jsonb) AS (
            state text, queue text, worker text, meta jsonb, tags text[],
            max_attempts int, priority int, scheduled_at timestamp, scheduled_in_us bigint
        )
    ) WITH ORDINALITY AS s(state, queue, worker, meta, tags, max_attempts, priority,
                           scheduled_at, scheduled_in_us, shape)
),
inserted AS (
    INSERT INTO {prefix}.oban_jobs
        (state, queue, worker, args, meta, tags, max_attempts, priority, scheduled_at)
    SELECT s.state::{prefix}.oban_job_state,
           s.queue,
           s.worker,
           a.args,
           s.meta,
           s.tags,
           s.max_attempts,
           s.priority,
           -- schedule_in: microseconds after the server's now, not the client's
           COALESCE(s.scheduled_at,
                    timezone('UTC', now()) + coalesce(s.scheduled_in_us, 0) * interval '1 microsecond')
    -- ROWS FROM zips the two lists; no shapes list pads every job's with NULL: the only shape.
    FROM ROWS FROM (
        jsonb_array_elements(%(args)s::jsonb),
        unnest(%(kinds)s::int[])
    ) WITH ORDINALITY AS a(args, shape, ord)
    JOIN shapes AS s ON s.shape = coalesce(a.shape, 1)
    ORDER BY a.ord
    -- Only what the server chose: the client fills in the rest from the jobs it sent, which
    -- spares encoding and decoding every inserted row.
    RETURNING id, inserted_at
),
notified AS (
    -- Byte for byte Elixir's payload: {{"queue":"<queue>"}} (Jason writes no spaces).
    SELECT pg_notify(%(channel)s, '{{"queue":' || to_json(q.queue)::text || '}}')
    FROM (SELECT DISTINCT s.queue FROM shapes AS s WHERE s.state = 'available') AS q
)
-- One row for the batch: the ids in input order (assigned in it) and the statement's time, the
-- scheduled time of every job sent without one and, as the column default has it, every row's
-- insert time; only should a changed default give rows other insert times, those too, in the
-- same order. Decoding thousands of rows of timestamps cost the client more than the server
-- spent inserting them.
SELECT array_agg(inserted.id ORDER BY inserted.id) AS ids,
       timezone('UTC', now()) AS now,
       CASE WHEN bool_or(inserted.inserted_at <> timezone('UTC', now()))
            THEN array_agg(inserted.inserted_at ORDER BY inserted.id)
       END AS inserted_ats
FROM inserted, (SELECT count(*) FROM notified) AS sent
