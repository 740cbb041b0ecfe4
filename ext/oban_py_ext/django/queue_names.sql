-- The distinct queues of oban_jobs without reading every row: a skip scan per state down the
-- (state, queue, ...) index Elixir's migrations create, one index probe per state and queue.
-- A plain SELECT DISTINCT queue reads the whole table (104 ms at 1M rows).
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
