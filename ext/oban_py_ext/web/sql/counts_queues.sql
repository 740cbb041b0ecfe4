-- The queues holding jobs in a state from ``after`` on (itself included), at most ``most``:
-- one index row read per queue (each step jumps to the next queue name along the
-- (state, queue, ...) index), for a state too big to count.
WITH RECURSIVE queues(queue) AS (
    (
        SELECT j.queue
        FROM {prefix}.oban_jobs AS j
        WHERE j.state = %(state)s::{prefix}.oban_job_state AND j.queue >= %(after)s
        ORDER BY j.queue
        LIMIT 1
    )
    UNION ALL
    SELECT (
        SELECT j.queue
        FROM {prefix}.oban_jobs AS j
        WHERE j.state = %(state)s::{prefix}.oban_job_state AND j.queue > q.queue
        ORDER BY j.queue
        LIMIT 1
    )
    FROM queues AS q
    WHERE q.queue IS NOT NULL
)
SELECT queue FROM queues WHERE queue IS NOT NULL LIMIT %(most)s
