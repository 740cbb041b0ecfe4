-- Write many finished jobs in one statement. Each row is guarded by the attempt it belongs to
-- (same attempted_at) and by state executing, so an ack never overwrites a row cancelled or
-- rescued meanwhile. The one exception is a pkill ack: its row was set cancelled by the cancel
-- that killed it, and Elixir then rewrites cancelled_at and appends the {{:cancel, :shutdown}}
-- error entry.
-- A new scheduled_at is a delay in seconds added to the server's clock, never a time from the
-- node's clock: the stager compares it with the server's clock.
-- Optional columns may come as empty arrays (every ack at its default): multi-argument unnest
-- pads them with NULLs, read here as the defaults.
UPDATE {prefix}.oban_jobs AS j
SET state = u.state::{prefix}.oban_job_state,
    completed_at = CASE WHEN u.state = 'completed' THEN u.at AT TIME ZONE 'UTC' ELSE j.completed_at END,
    cancelled_at = CASE WHEN u.state = 'cancelled' THEN u.at AT TIME ZONE 'UTC' ELSE j.cancelled_at END,
    discarded_at = CASE WHEN u.state = 'discarded' THEN u.at AT TIME ZONE 'UTC' ELSE j.discarded_at END,
    scheduled_at = COALESCE(timezone('UTC', now()) + make_interval(secs => u.scheduled_in),
                            j.scheduled_at),
    max_attempts = j.max_attempts + coalesce(u.extra_attempts, 0),
    attempt = j.attempt + coalesce(u.attempt_delta, 0),
    errors = CASE WHEN u.error IS NULL THEN j.errors ELSE j.errors || u.error::jsonb END,
    meta = CASE WHEN u.meta IS NULL THEN j.meta ELSE coalesce(j.meta, '{{}}'::jsonb) || u.meta::jsonb END
FROM unnest(
    %(ids)s::bigint[],
    %(attempted_at)s::timestamptz[],
    %(states)s::text[],
    %(at)s::timestamptz[],
    %(scheduled_in)s::float8[],
    %(extra_attempts)s::int[],
    %(attempt_delta)s::int[],
    %(errors)s::text[],
    %(metas)s::text[],
    %(pkill)s::bool[]
) AS u(id, attempted_at, state, at, scheduled_in, extra_attempts, attempt_delta, error, meta, pkill)
WHERE j.id = u.id
  AND j.attempted_at = u.attempted_at AT TIME ZONE 'UTC'
  -- A CASE, not an OR: the planner turns an OR of state tests into a scan of a state index,
  -- which after an ANALYZE of a freshly filled table made acks 2-4x slower; the primary key
  -- must stay the only way in.
  AND CASE WHEN coalesce(u.pkill, false) THEN j.state IN ('executing', 'cancelled')
           ELSE j.state = 'executing' END
RETURNING j.id
