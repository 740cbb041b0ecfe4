-- Time-based rescue without the heartbeats table (a schema only Elixir migrated): Elixir's
-- Lifeline rule, limited to the queues this node runs, since without heartbeats nothing tells a
-- Python producer's jobs from an Elixir producer's. At most %(limit)s rows a pass (see
-- rescue_dead_producers.sql).
WITH doomed AS (
  SELECT j.id
  FROM {prefix}.oban_jobs AS j
  WHERE j.state = 'executing'
    AND j.queue = ANY(%(queues)s::text[])
    AND j.attempted_at < timezone('UTC', now()) - make_interval(secs => %(rescue_after)s)
  LIMIT %(limit)s
  FOR UPDATE OF j SKIP LOCKED
)
{rescue_doomed}
