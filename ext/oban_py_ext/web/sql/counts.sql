-- Jobs per queue and state, for the overview, queue pages and job list totals: its parts are
-- counts_state.sql once per state, joined by UNION ALL. ``over``: the state holds more than
-- the cap, so the count of its ``last`` queue reached is partial and the queues after it were
-- not reached (oban_py_ext.web.reads.Reads.counts estimates those); the others are exact.
SELECT state, queue, count,
       sum(count) OVER (PARTITION BY state) > %(cap)s AS over,
       queue = max(queue) OVER (PARTITION BY state) AS last
FROM ({parts}) AS c
