-- drain_queue(with_scheduled=...): make a queue's scheduled and retryable jobs due by
-- %(until)s available now, as Elixir's drainer does before each fetch. Jobs snoozed during
-- this drain (%(exclude)s) stay scheduled, so a snoozing worker cannot make it loop forever.
-- A scoped drain (%(only)s not NULL) stages only the jobs its testing client inserted.
UPDATE {prefix}.oban_jobs
SET state = 'available'
WHERE queue = %(queue)s
  AND state IN ('scheduled', 'retryable')
  AND scheduled_at <= %(until)s::timestamp
  AND NOT (id = ANY(%(exclude)s::bigint[]))
  AND (%(only)s::bigint[] IS NULL OR id = ANY(%(only)s::bigint[]))
