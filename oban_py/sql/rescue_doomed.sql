-- A part, not a statement (sql/__init__.py places it where rescue_dead_producers.sql,
-- rescue_stuck_jobs.sql and rescue_stuck_jobs_by_time.sql name it): Elixir's lifeline outcome
-- for the rows of `doomed`, available with attempt unchanged, or discarded when out of
-- attempts; no errors entry.
UPDATE {prefix}.oban_jobs AS j
SET state = CASE WHEN j.attempt >= j.max_attempts
              THEN 'discarded'::{prefix}.oban_job_state
              ELSE 'available'::{prefix}.oban_job_state END,
    discarded_at = CASE WHEN j.attempt >= j.max_attempts
                     THEN timezone('UTC', now()) ELSE j.discarded_at END
FROM doomed
WHERE j.id = doomed.id
RETURNING j.id, j.queue, j.state::text AS state
