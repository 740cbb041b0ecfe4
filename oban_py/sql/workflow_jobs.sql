-- Every job of one workflow (the GIN index on meta finds them), in id order.
SELECT j.id, j.state::text AS state, j.queue, j.worker, j.meta, j.attempt, j.max_attempts
FROM {prefix}.oban_jobs AS j
WHERE j.meta @> jsonb_build_object('workflow_id', %(workflow_id)s::text)
ORDER BY j.id
