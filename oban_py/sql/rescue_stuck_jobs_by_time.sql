-- Time-based rescue without the heartbeats table (a schema only Elixir migrated): Elixir's
-- Lifeline rule, limited to the queues this node runs, since without heartbeats nothing tells a
-- Python producer's jobs from an Elixir producer's.
UPDATE {prefix}.oban_jobs AS j
SET state = CASE WHEN j.attempt >= j.max_attempts
              THEN 'discarded'::{prefix}.oban_job_state
              ELSE 'available'::{prefix}.oban_job_state END,
    discarded_at = CASE WHEN j.attempt >= j.max_attempts
                     THEN timezone('UTC', now()) ELSE j.discarded_at END
WHERE j.state = 'executing'
  AND j.queue = ANY(%(queues)s::text[])
  AND j.attempted_at < timezone('UTC', now()) - make_interval(secs => %(rescue_after)s)
RETURNING j.id, j.queue, j.state::text AS state
