-- Rows of dead producers are kept for the retention so their uuids stay known as Python's;
-- one still named by an executing job is never dropped (it would hide that job from rescue).
DELETE FROM {prefix}.oban_py_heartbeats AS h
WHERE h.updated_at < timezone('UTC', now()) - make_interval(secs => %(retention)s)
  AND NOT EXISTS (
    SELECT 1 FROM {prefix}.oban_jobs AS j
    WHERE j.state = 'executing' AND j.attempted_by[2] = h.uuid::text
  )
