-- Fast rescue: jobs executing under a Python producer whose heartbeat stopped, with Elixir's
-- lifeline outcome (rescue_doomed.sql). The leader's own producers are alive whatever their
-- rows say (their heartbeat may just have missed a write while the database was away), so they
-- are never rescued here.
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
{rescue_doomed}
