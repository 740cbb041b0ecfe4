-- The job filter shared by the job list and bulk actions (oban_py_ext.web.reads appends the
-- keyset bound and the order). A NULL value matches all; statements using it are never
-- prepared, so each execution is planned with its values and the unused filters fold away.
-- Each filter is an indexed predicate where the schema has one: state (the state/queue
-- index, the state/discarded_at and state/cancelled_at indexes), args (GIN, containment).
SELECT id, state::text AS state, queue, worker, args, attempt, max_attempts, priority, tags,
       inserted_at, scheduled_at, attempted_at, completed_at, discarded_at, cancelled_at
FROM {prefix}.oban_jobs
WHERE (%(state)s::text IS NULL OR state = %(state)s::text::{prefix}.oban_job_state)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(worker)s::text IS NULL OR worker = %(worker)s::text)
  AND (%(tags)s::text[] IS NULL OR tags @> %(tags)s::text[])
  AND (%(args)s::jsonb IS NULL OR args @> %(args)s::jsonb)
  AND (%(text)s::text IS NULL OR strpos(args::text, %(text)s::text) > 0)
