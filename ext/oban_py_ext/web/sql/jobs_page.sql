-- Jobs matching a filter, by keyset: a page of the job list (newest first, or oldest first
-- when paging back) or a batch of a bulk action. The WHERE clause holds only the conditions of
-- the filters in use (job_filters.sql), never a "NULL OR" placeholder: the planner then sees
-- plain column = value comparisons, which the state/queue index and PostgreSQL's statistics
-- (extended ones included) serve. Statements are never prepared, so each is planned with its
-- own values. The order is the primary key's, or a timestamp's within a window of ids.
SELECT id, state::text AS state, queue, worker, args, attempt, max_attempts, priority, tags,
       attempted_by[1] AS node, inserted_at, scheduled_at, attempted_at, completed_at,
       discarded_at, cancelled_at
FROM {prefix}.oban_jobs
WHERE {where}
ORDER BY {order}
LIMIT %(limit)s
