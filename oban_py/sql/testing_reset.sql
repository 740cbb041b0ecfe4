-- testing.reset(): delete a test's jobs, all of the prefix or only %(only)s when it is given.
DELETE FROM {prefix}.oban_jobs
WHERE (%(only)s::bigint[] IS NULL OR id = ANY(%(only)s::bigint[]))
RETURNING id
