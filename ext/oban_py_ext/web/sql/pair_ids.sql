-- The ids of one (state, queue), at most "most" of them: read in the state/queue index's own
-- order, so the planner walks that index and reads no row of another pair. A page whose pair
-- holds few jobs is then read among these ids (job_filters.sql "ids"), never by walking the
-- primary key past every job of the other pairs (the planner, taking state and queue for
-- independent, expects the pair's jobs spread all along it).
SELECT coalesce(array_agg(id), '{{}}') AS ids
FROM (SELECT id FROM {prefix}.oban_jobs
      WHERE state = %(state)s AND queue = %(queue)s
      ORDER BY priority, scheduled_at, id
      LIMIT %(most)s) AS pair
