-- Change only the given columns of one job, as Elixir's Job.update: every other column keeps
-- its stored value untouched (args and meta are not decoded and re-encoded). A scheduled_at that
-- changes moves a waiting job (available, scheduled, retryable) to scheduled when it is in the
-- future and to available when it is not; a job that is suspended, executing or finished keeps
-- its state. The row is locked, skipping a row another transaction holds (Elixir's
-- FOR UPDATE SKIP LOCKED): no row comes back when the job is missing or locked.
UPDATE {prefix}.oban_jobs AS j
SET args = CASE WHEN %(set_args)s THEN %(args)s::jsonb ELSE j.args END,
    max_attempts = CASE WHEN %(set_max_attempts)s
                        THEN %(max_attempts)s::int ELSE j.max_attempts END,
    meta = CASE WHEN %(set_meta)s THEN %(meta)s::jsonb ELSE j.meta END,
    priority = CASE WHEN %(set_priority)s THEN %(priority)s::int ELSE j.priority END,
    queue = CASE WHEN %(set_queue)s THEN %(queue)s::text ELSE j.queue END,
    scheduled_at = CASE WHEN %(set_scheduled_at)s
                        THEN %(scheduled_at)s::timestamp ELSE j.scheduled_at END,
    tags = CASE WHEN %(set_tags)s THEN %(tags)s::text[] ELSE j.tags END,
    worker = CASE WHEN %(set_worker)s THEN %(worker)s::text ELSE j.worker END,
    state = CASE
        WHEN %(set_scheduled_at)s
             AND j.state IN ('available', 'scheduled', 'retryable')
             AND %(scheduled_at)s::timestamp IS DISTINCT FROM j.scheduled_at
        THEN CASE WHEN %(scheduled_at)s::timestamp > timezone('UTC', now())
                  THEN 'scheduled' ELSE 'available' END::{prefix}.oban_job_state
        ELSE j.state
    END
FROM (
    SELECT id FROM {prefix}.oban_jobs WHERE id = %(id)s FOR UPDATE SKIP LOCKED
) AS locked
WHERE j.id = locked.id
RETURNING j.*
