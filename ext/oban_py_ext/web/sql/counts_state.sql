-- One state's part of counts.sql: at most cap + 1 of its rows, walked in queue order along
-- the (state, queue, ...) index, so a refresh reads no more than cap + 1 rows of a state
-- whatever the size of the table.
SELECT {state}::text AS state, capped.queue, count(*) AS count
FROM (
    SELECT j.queue
    FROM {prefix}.oban_jobs AS j
    WHERE j.state = {state}::{prefix}.oban_job_state
    ORDER BY j.queue
    LIMIT %(cap)s + 1
) AS capped
GROUP BY capped.queue
