-- Jobs per queue and state for ``oban-py stats`` (a full count: fine for a command, not a loop).
SELECT queue, state::text AS state, count(*) AS count
FROM {prefix}.oban_jobs
GROUP BY queue, state
ORDER BY queue, state
