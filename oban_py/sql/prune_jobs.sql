-- Elixir's pruner rule: completed by scheduled_at, cancelled and discarded by their own stamp.
-- A finished job of a workflow stays while its workflow has jobs left to finish: they may still
-- need its state to be released (a deleted dependency reads as failed, so even a cancelled or
-- discarded one must stay for a dependent whose policy runs it anyway) and its recorded result
-- (docs/workflows.md).
WITH doomed AS (
  SELECT p.id
  FROM {prefix}.oban_jobs AS p
  WHERE queue IS NOT NULL
    AND (
      (state = 'completed' AND scheduled_at < timezone('UTC', now()) - make_interval(secs => %(max_age)s))
      OR (state = 'cancelled' AND cancelled_at < timezone('UTC', now()) - make_interval(secs => %(max_age)s))
      OR (state = 'discarded' AND discarded_at < timezone('UTC', now()) - make_interval(secs => %(max_age)s))
    )
    AND NOT (
      p.meta ? 'workflow_id'
      AND EXISTS (
        SELECT 1
        FROM {prefix}.oban_jobs AS w
        WHERE w.meta @> jsonb_build_object('workflow_id', p.meta->'workflow_id')
          AND w.state NOT IN ('completed', 'cancelled', 'discarded')
      )
    )
  LIMIT %(limit)s
  FOR UPDATE SKIP LOCKED
)
DELETE FROM {prefix}.oban_jobs AS j
USING doomed
WHERE j.id = doomed.id
RETURNING j.id
