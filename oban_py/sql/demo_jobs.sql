-- ``oban-py demo``: the demo's jobs, to wait for their final states and tell what became of each.
SELECT id, worker, state::text AS state, attempt, max_attempts, errors, meta
FROM {prefix}.oban_jobs
WHERE id = ANY(%(ids)s::bigint[])
ORDER BY id
