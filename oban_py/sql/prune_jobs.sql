-- Elixir's pruner rule: completed by scheduled_at, cancelled and discarded by their own stamp.
-- A completed job of a workflow stays while its workflow has jobs left to finish: they may still
-- need its state to be released and its recorded result (docs/workflows.md).
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
      p.state = 'completed'
      AND p.meta ? 'workflow_id'
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
