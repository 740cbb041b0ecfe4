-- Jobs per queue and state, for the overview and queue pages. One pass over the
-- (state, queue, ...) index; the dashboard runs it at most once per refresh interval,
-- whatever the number of viewers (see oban_py_ext.web.cache).
SELECT queue, state::text AS state, count(*) AS count
FROM {prefix}.oban_jobs
GROUP BY queue, state
