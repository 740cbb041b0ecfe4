-- Make jobs available again, as Elixir's retry_all_jobs: any state but available and executing;
-- enough max_attempts for one more attempt; finished timestamps cleared.
UPDATE {prefix}.oban_jobs
SET state = 'available',
    max_attempts = GREATEST(max_attempts, attempt + 1),
    scheduled_at = timezone('UTC', now()),
    completed_at = NULL,
    cancelled_at = NULL,
    discarded_at = NULL
WHERE id = ANY(%(ids)s::bigint[])
  AND state NOT IN ('available', 'executing')
RETURNING id
