-- A part, not a statement (sql/__init__.py places it where flow_claim.sql and
-- flow_claim_whole.sql name it): the end every flow claim shares. It takes the jobs
-- of `chosen` (id, and rkey: the partition key under the rate limit) that are still
-- available and not locked by another fetch, claims them as fetch_jobs.sql does
-- (claim_update.sql) at the claim's clock, logs a start for each under a rate limit, and
-- prunes the starts that left the window.
subset AS MATERIALIZED (
    SELECT j.id
    FROM {prefix}.oban_jobs AS j
    WHERE j.id IN (SELECT id FROM chosen)
      AND j.state = 'available'
    FOR UPDATE SKIP LOCKED
),
claimed AS (
{claim_update}
),
recorded AS (
    INSERT INTO {prefix}.oban_py_flow_starts (queue, key, started_at)
    SELECT %(queue)s, c.rkey, (SELECT at FROM clock)
    FROM chosen AS c
    WHERE %(rate)s::int IS NOT NULL
      AND c.id IN (SELECT id FROM claimed)
),
pruned AS (
    DELETE FROM {prefix}.oban_py_flow_starts AS s
    USING clock
    WHERE %(rate)s::int IS NOT NULL
      AND s.queue = %(queue)s
      AND s.started_at <= clock.at - make_interval(secs => %(period)s)
)
SELECT * FROM claimed
