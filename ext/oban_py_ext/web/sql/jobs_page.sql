-- Jobs matching a filter, by keyset on the primary key: a page of the job list (newest first,
-- or oldest first when paging back) or a batch of a bulk action. The WHERE clause holds only
-- the conditions of the filters in use (job_filters.sql), never a "NULL OR" placeholder: the
-- planner then sees plain column = value comparisons, which the state/queue index and
-- PostgreSQL's statistics (extended ones included) serve. Statements are never prepared, so
-- each is planned with its own values.
SELECT id, state::text AS state, queue, worker, args, attempt, max_attempts, priority, tags,
       inserted_at, scheduled_at, attempted_at, completed_at, discarded_at, cancelled_at
FROM {prefix}.oban_jobs
WHERE {where}
ORDER BY id {order}
LIMIT %(limit)s
