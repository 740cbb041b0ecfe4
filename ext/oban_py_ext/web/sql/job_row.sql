-- One job with every column, as stored (args may be any JSON Elixir or SQL put there).
SELECT id, state::text AS state, queue, worker, args, meta, errors, attempt, max_attempts,
       priority, tags, attempted_by, inserted_at, scheduled_at, attempted_at, completed_at,
       discarded_at, cancelled_at
FROM {prefix}.oban_jobs
WHERE id = %(id)s
