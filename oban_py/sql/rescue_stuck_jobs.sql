-- Time-based rescue as Elixir's Lifeline, but only in queues Python producers run (known from
-- heartbeats) and never under a producer that is still beating: a long job on a live node, or
-- a job of an Elixir-only queue, is never taken back. At most %(limit)s rows a pass (see
-- rescue_dead_producers.sql).
WITH doomed AS (
  SELECT j.id
  FROM {prefix}.oban_jobs AS j
  WHERE j.state = 'executing'
    AND j.attempted_at < timezone('UTC', now()) - make_interval(secs => %(rescue_after)s)
    AND j.queue IN (SELECT DISTINCT queue FROM {prefix}.oban_py_heartbeats)
    AND NOT j.attempted_by[2] = ANY(%(live)s::text[])
    AND NOT EXISTS (
      SELECT 1 FROM {prefix}.oban_py_heartbeats AS live
      WHERE live.uuid::text = j.attempted_by[2]
        AND live.updated_at >= timezone('UTC', now()) - make_interval(secs => %(ttl)s)
    )
  LIMIT %(limit)s
  FOR UPDATE OF j SKIP LOCKED
)
{rescue_doomed}
