-- Elixir's Basic engine stage_jobs: the newest due jobs first, at most %(limit)s a pass.
-- SKIP LOCKED so a pass never waits on rows another transaction is acking.
WITH due AS (
  SELECT id
  FROM {prefix}.oban_jobs
  WHERE state IN ('scheduled', 'retryable')
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
