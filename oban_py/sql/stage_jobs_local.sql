-- Local mode (notifications lost): a node stages only the queues it runs itself.
WITH due AS (
  SELECT id
  FROM {prefix}.oban_jobs
  WHERE state IN ('scheduled', 'retryable')
    AND queue = ANY(%(queues)s::text[])
    AND scheduled_at <= timezone('UTC', now())
  ORDER BY scheduled_at DESC, id DESC
  LIMIT %(limit)s
  FOR UPDATE SKIP LOCKED
)
UPDATE {prefix}.oban_jobs AS j
SET state = 'available'
FROM due
WHERE j.id = due.id
RETURNING j.id, j.queue
