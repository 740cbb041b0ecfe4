-- The rows a producer's claims left executing, for reconciliation with the attempts it runs: a
-- row under this producer's uuid that it no longer runs (its outcome never arrived) is released.
SELECT id, attempted_at, attempt >= max_attempts AS exhausted
FROM {prefix}.oban_jobs
WHERE state = 'executing'
  AND queue = %(queue)s
  AND attempted_by[2] = %(uuid)s
