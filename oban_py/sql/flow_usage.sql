-- What a flow-limited queue uses now (oban_py/flow: `oban-py queues`, `oban-py flow`, the
-- oban.flow.usage telemetry event): under its global limit, its jobs executing under live
-- Python producers; under its rate limit, its starts within the window. A row per limit the
-- queue has with its whole count (key NULL), then, for a partitioned limit, a row per key in
-- use (the busiest `most`). A read: it takes no lock and claims nothing.
WITH clock AS MATERIALIZED (
    SELECT timezone('UTC', clock_timestamp()) AS at
),
running AS (
    SELECT {flow_key_g} AS key
    FROM {prefix}.oban_jobs AS p, clock
    WHERE %(global)s::int IS NOT NULL
      AND p.state = 'executing'
      AND p.queue = %(queue)s
      AND p.attempted_by[2] IN (
          SELECT h.uuid::text
          FROM {prefix}.oban_py_heartbeats AS h
          WHERE h.queue = %(queue)s
            AND h.updated_at >= clock.at - make_interval(secs => %(ttl)s)
      )
),
started AS (
    SELECT s.key
    FROM {prefix}.oban_py_flow_starts AS s, clock
    WHERE %(rate)s::int IS NOT NULL
      AND s.queue = %(queue)s
      AND s.started_at > clock.at - make_interval(secs => %(period)s)
)
SELECT 'global' AS side, NULL::text AS key, count(*) AS used
FROM running HAVING %(global)s::int IS NOT NULL
UNION ALL
SELECT 'rate', NULL, count(*) FROM started HAVING %(rate)s::int IS NOT NULL
UNION ALL
(SELECT 'global', key, count(*) FROM running WHERE %(g_part)s
 GROUP BY key ORDER BY 3 DESC, key LIMIT %(most)s)
UNION ALL
(SELECT 'rate', key, count(*) FROM started WHERE %(r_part)s
 GROUP BY key ORDER BY 3 DESC, key LIMIT %(most)s)
