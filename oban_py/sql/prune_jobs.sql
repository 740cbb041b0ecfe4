-- Elixir's pruner rule: completed by scheduled_at, cancelled and discarded by their own stamp.
WITH doomed AS (
  SELECT id
  FROM {prefix}.oban_jobs
  WHERE queue IS NOT NULL
    AND (
      (state = 'completed' AND scheduled_at < timezone('UTC', now()) - make_interval(secs => %(max_age)s))
      OR (state = 'cancelled' AND cancelled_at < timezone('UTC', now()) - make_interval(secs => %(max_age)s))
      OR (state = 'discarded' AND discarded_at < timezone('UTC', now()) - make_interval(secs => %(max_age)s))
    )
  LIMIT %(limit)s
  FOR UPDATE SKIP LOCKED
)
DELETE FROM {prefix}.oban_jobs AS j
USING doomed
WHERE j.id = doomed.id
RETURNING j.id
