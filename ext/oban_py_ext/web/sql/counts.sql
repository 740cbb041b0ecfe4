-- Jobs per queue and state, for the overview, queue pages and job list totals: at most
-- %(cap)s + 1 rows of each state, walked in queue order along the (state, queue, ...) index, so
-- a refresh reads no more than (cap + 1) rows per state whatever the size of the table.
-- ``over``: the state holds more than the cap, so the count of its ``last`` queue reached is
-- partial and the queues after it are not reached (oban_py_ext.web.reads.Reads.counts
-- estimates those); the others are exact.
SELECT s.state::text AS state, c.queue, c.count,
       sum(c.count) OVER (PARTITION BY s.state) > %(cap)s AS over,
       c.queue = max(c.queue) OVER (PARTITION BY s.state) AS last
FROM unnest(enum_range(NULL::{prefix}.oban_job_state)) AS s(state)
CROSS JOIN LATERAL (
    SELECT capped.queue, count(*) AS count
    FROM (
        SELECT j.queue
        FROM {prefix}.oban_jobs AS j
        WHERE j.state = s.state
        ORDER BY j.queue
        LIMIT %(cap)s + 1
    ) AS capped
    GROUP BY capped.queue
) AS c
