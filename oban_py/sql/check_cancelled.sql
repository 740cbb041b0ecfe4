-- Which of a producer's running jobs were cancelled in the database: the safety net for a
-- pkill notification that never arrived.
SELECT id
FROM {prefix}.oban_jobs
WHERE id = ANY(%(ids)s::bigint[])
  AND state = 'cancelled'
