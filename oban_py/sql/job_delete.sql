-- Delete jobs, never one that is executing (as Elixir's delete_all_jobs).
DELETE FROM {prefix}.oban_jobs
WHERE id = ANY(%(ids)s::bigint[])
  AND state <> 'executing'
RETURNING id
