-- Fast rescue: jobs executing under a Python producer whose heartbeat stopped. Elixir's
-- lifeline outcome: available with attempt unchanged, or discarded when out of attempts; no
-- errors entry. The leader's own producers are alive whatever their rows say (their heartbeat
-- may just have missed a write while the database was away), so they are never rescued here.
-- At most %(limit)s rows a pass, so the statement fits a statement timeout (the lifeline
-- halves the limit when it does not); a row being acked right now is skipped, not waited for.
WITH doomed AS (
  SELECT j.id
  FROM {prefix}.oban_jobs AS j
  JOIN {prefix}.oban_py_heartbeats AS h
    ON j.attempted_by[2] = h.uuid::text AND j.attempted_by[1] = h.node
  WHERE j.state = 'executing'
    AND h.updated_at < timezone('UTC', now()) - make_interval(secs => %(ttl)s)
    AND NOT h.uuid = ANY(%(live)s::uuid[])
  LIMIT %(limit)s
  FOR UPDATE OF j SKIP LOCKED
)
UPDATE {prefix}.oban_jobs AS j
SET state = CASE WHEN j.attempt >= j.max_attempts
              THEN 'discarded'::{prefix}.oban_job_state
              ELSE 'available'::{prefix}.oban_job_state END,
    discarded_at = CASE WHEN j.attempt >= j.max_attempts
                     THEN timezone('UTC', now()) ELSE j.discarded_at END
FROM doomed
WHERE j.id = doomed.id
RETURNING j.id, j.queue, j.state::text AS state
