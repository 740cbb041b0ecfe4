-- The newest jobs of each crontab entry, for all entries in one statement (the cron page's
-- one read per refresh). Each entry's jobs are those whose meta contains its filter (its
-- cron_name, or for an unnamed Elixir entry cron and cron_expr, plus the worker): the GIN
-- index on meta finds them. "id + 0" keeps the planner off a backward
-- walk of the primary key, which would read the whole table for an entry with no jobs; this
-- way an entry costs the jobs it has in the table, never the others.
SELECT e.ord, j.id, j.state, j.scheduled_at, j.attempted_at, j.finished_at, j.cron_tz
FROM unnest(%(filters)s::jsonb[], %(workers)s::text[]) WITH ORDINALITY AS e (filter, worker, ord)
CROSS JOIN LATERAL (
  SELECT id, state::text AS state, scheduled_at, attempted_at,
         COALESCE(completed_at, cancelled_at, discarded_at) AS finished_at,
         meta ->> 'cron_tz' AS cron_tz
  FROM {prefix}.oban_jobs
  WHERE meta @> e.filter AND (e.worker IS NULL OR worker = e.worker)
  ORDER BY id + 0 DESC
  LIMIT %(limit)s
) AS j
ORDER BY e.ord, j.id DESC
