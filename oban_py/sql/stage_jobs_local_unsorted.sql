-- stage_jobs_local without the order, as stage_jobs_unsorted (a backlog under a statement
-- timeout): it stops after %(limit)s rows instead of sorting every due row of the queues.
WITH due AS (
  SELECT id
  FROM {prefix}.oban_jobs
  WHERE state IN ('scheduled', 'retryable')
    AND queue = ANY(%(queues)s::text[])
    AND scheduled_at <= timezone('UTC', now())
  LIMIT %(limit)s
  FOR UPDATE SKIP LOCKED
)
UPDATE {prefix}.oban_jobs AS j
SET state = 'available'
FROM due
WHERE j.id = due.id
RETURNING j.id, j.queue
