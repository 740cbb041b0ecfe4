-- The workflows holding jobs, after %(after)s in workflow id order, %(limit)s at a time: the
-- releaser's safety net pages through them all (a dependency finished on an Elixir node, a wake
-- lost with its node).
SELECT DISTINCT j.meta->>'workflow_id' AS workflow_id
FROM {prefix}.oban_jobs AS j
WHERE j.state = 'suspended'
  AND j.meta ? 'workflow_id'
  AND j.meta->>'workflow_id' > %(after)s
ORDER BY 1
LIMIT %(limit)s
