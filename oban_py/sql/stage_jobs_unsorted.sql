-- stage_jobs without its newest-first order, for a backlog under a statement timeout: sorting
-- reads every due row whatever the LIMIT (200,000 due rows cost ~40 ms before a single one is
-- staged), while this stops after %(limit)s rows. The stager uses it while its batch is shrunk.
WITH due AS (
  SELECT id
  FROM {prefix}.oban_jobs
  WHERE state IN ('scheduled', 'retryable')
    AND scheduled_at <= timezone('UTC', now())
  LIMIT %(limit)s
  FOR UPDATE SKIP LOCKED
)
UPDATE {prefix}.oban_jobs AS j
SET state = 'available'
FROM due
WHERE j.id = due.id
RETURNING j.id, j.queue
