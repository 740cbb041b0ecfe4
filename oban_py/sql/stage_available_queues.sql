-- The queues with available jobs, one index probe per queue (a loose index scan on the
-- state-first index) rather than reading every available row: a backlog of 200,000 available
-- jobs costs a plain DISTINCT ~30 ms, enough to run out of a low statement_timeout each pass.
WITH RECURSIVE queues AS (
  (SELECT queue FROM {prefix}.oban_jobs WHERE state = 'available' ORDER BY queue LIMIT 1)
  UNION ALL
  SELECT (
    SELECT j.queue FROM {prefix}.oban_jobs AS j
    WHERE j.state = 'available' AND j.queue > q.queue
    ORDER BY j.queue LIMIT 1
  )
  FROM queues AS q
  WHERE q.queue IS NOT NULL
)
SELECT queue FROM queues WHERE queue IS NOT NULL
