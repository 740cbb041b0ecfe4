-- The distinct queues of oban_jobs without reading every row: a skip scan per state down the
-- (state, queue, ...) index Elixir's migrations create, one index probe per state and queue.
-- A plain SELECT DISTINCT queue reads the whole table: at 1M rows in 12 queues, 130 ms against
-- 0.4 ms for this (best of 5, local PostgreSQL 15).
WITH RECURSIVE walk(state, queue) AS (
    SELECT s.state,
           (SELECT j.queue FROM {prefix}.oban_jobs j
             WHERE j.state = s.state ORDER BY j.queue LIMIT 1)
    FROM unnest(enum_range(NULL::{prefix}.oban_job_state)) AS s(state)
  UNION ALL
    SELECT w.state,
           (SELECT j.queue FROM {prefix}.oban_jobs j
             WHERE j.state = w.state AND j.queue > w.queue ORDER BY j.queue LIMIT 1)
    FROM walk w
    WHERE w.queue IS NOT NULL
)
SELECT DISTINCT queue FROM walk WHERE queue IS NOT NULL ORDER BY queue
