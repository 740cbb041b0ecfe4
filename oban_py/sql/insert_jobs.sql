-- Insert a batch of jobs in one round trip: one JSON document of rows, unpacked in input
-- order. Columns left out (inserted_at, errors, attempted_*, *_at) take the table defaults, as
-- Elixir's inserts do; a NULL scheduled_at means "now", so it equals inserted_at.
-- Producers are told about every queue that gained an available job, in this same statement
-- (inside a transaction the NOTIFY is delivered on commit, and not at all on rollback).
WITH rows AS (
    SELECT *
    FROM ROWS FROM (
        jsonb_to_recordset(%(rows)s::jsonb) AS (
            state text, queue text, worker text, args jsonb, meta jsonb, tags text[],
            max_attempts int, priority int, scheduled_at timestamp
        )
    ) WITH ORDINALITY AS r(state, queue, worker, args, meta, tags, max_attempts, priority,
                           scheduled_at, ord)
),
inserted AS (
    INSERT INTO {prefix}.oban_jobs
        (state, queue, worker, args, meta, tags, max_attempts, priority, scheduled_at)
    SELECT r.state::{prefix}.oban_job_state,
           r.queue,
           r.worker,
           r.args,
           r.meta,
           r.tags,
           r.max_attempts,
           r.priority,
           COALESCE(r.scheduled_at, timezone('UTC', now()))
    FROM rows AS r
    ORDER BY r.ord
    -- Only what the server chose: the client fills in the rest from the jobs it sent, which
    -- spares encoding and decoding every inserted row.
    RETURNING id, inserted_at, scheduled_at, state, queue
),
notified AS (
    -- Byte for byte Elixir's payload: {{"queue":"<queue>"}} (Jason writes no spaces).
    SELECT pg_notify(%(channel)s, '{{"queue":' || to_json(q.queue)::text || '}}')
    FROM (SELECT DISTINCT i.queue FROM inserted AS i WHERE i.state = 'available') AS q
)
SELECT inserted.id, inserted.inserted_at, inserted.scheduled_at
FROM inserted, (SELECT count(*) FROM notified) AS sent
ORDER BY inserted.id
