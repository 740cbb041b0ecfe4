-- Claim jobs of a queue under its cluster-wide limits (oban_py/flow): at most `global` jobs of
-- the queue (or of each partition) executing under live Python producers, and at most `rate`
-- started in any `period` seconds (a sliding log in oban_py_flow_starts). The caller holds the
-- queue's advisory lock for the transaction, so counting and claiming are one step for every
-- Python node; Elixir producers take no such lock and are neither counted nor blocked. A
-- producer whose beat is older than the ttl holds no capacity, dead or not. Partitions are
-- found among the next `scan` available jobs.
WITH clock AS MATERIALIZED (
    SELECT timezone('UTC', clock_timestamp()) AS at
),
live AS (
    SELECT h.uuid::text AS uuid
    FROM {prefix}.oban_py_heartbeats AS h, clock
    WHERE h.queue = %(queue)s
      AND h.updated_at >= clock.at - make_interval(secs => %(ttl)s)
),
pool AS (
    SELECT j.id, j.worker, j.args, false AS waiting, j.priority, j.scheduled_at
    FROM {prefix}.oban_jobs AS j
    WHERE %(global)s::int IS NOT NULL
      AND j.state = 'executing'
      AND j.queue = %(queue)s
      AND j.attempted_by[2] IN (SELECT uuid FROM live)
      -- Ended on this node, their outcomes not written yet: they run no more.
      AND NOT j.id = ANY(%(finished)s::bigint[])
    UNION ALL
    (
        SELECT j.id, j.worker, j.args, true, j.priority, j.scheduled_at
        FROM {prefix}.oban_jobs AS j
        WHERE j.state = 'available'
          AND j.queue = %(queue)s
        ORDER BY j.priority, j.scheduled_at, j.id
        LIMIT %(scan)s
    )
),
keyed AS (
    SELECT p.*, {flow_key_g} AS gkey, {flow_key_r} AS rkey
    FROM pool AS p
),
running AS (
    SELECT gkey, count(*) AS n FROM keyed WHERE NOT waiting GROUP BY gkey
),
started AS (
    SELECT s.key AS rkey, count(*) AS n
    FROM {prefix}.oban_py_flow_starts AS s, clock
    WHERE %(rate)s::int IS NOT NULL
      AND s.queue = %(queue)s
      AND s.started_at > clock.at - make_interval(secs => %(period)s)
    GROUP BY s.key
),
ranked AS (
    SELECT k.id, k.rkey, k.priority, k.scheduled_at,
           row_number() OVER (PARTITION BY k.gkey ORDER BY k.priority, k.scheduled_at, k.id)
             AS g_rank,
           row_number() OVER (PARTITION BY k.rkey ORDER BY k.priority, k.scheduled_at, k.id)
             AS r_rank,
           COALESCE(u.n, 0) AS g_used,
           COALESCE(s.n, 0) AS r_used
    FROM keyed AS k
    LEFT JOIN running AS u ON u.gkey = k.gkey
    LEFT JOIN started AS s ON s.rkey = k.rkey
    WHERE k.waiting
),
chosen AS MATERIALIZED (
    SELECT r.id, r.rkey
    FROM ranked AS r
    WHERE (%(global)s::int IS NULL OR r.g_rank <= %(global)s::int - r.g_used)
      AND (%(rate)s::int IS NULL OR r.r_rank <= %(rate)s::int - r.r_used)
    ORDER BY r.priority, r.scheduled_at, r.id
    LIMIT %(demand)s
),
{flow_take}
