-- What a flow-limited queue uses now, for `oban-py queues` and telemetry: jobs executing under
-- live Python producers and starts within the rate window, by partition key.
WITH clock AS MATERIALIZED (
    SELECT timezone('UTC', clock_timestamp()) AS at
)
SELECT count(*) FILTER (WHERE j.state = 'executing') AS executing,
       (SELECT count(*)
        FROM {prefix}.oban_py_flow_starts AS s, clock
        WHERE s.queue = %(queue)s
          AND s.started_at > clock.at - make_interval(secs => %(period)s)) AS started
FROM {prefix}.oban_jobs AS j, clock
WHERE j.state = 'executing'
  AND j.queue = %(queue)s
  AND j.attempted_by[2] IN (
      SELECT h.uuid::text
      FROM {prefix}.oban_py_heartbeats AS h
      WHERE h.queue = %(queue)s
        AND h.updated_at >= clock.at - make_interval(secs => %(ttl)s)
  )
