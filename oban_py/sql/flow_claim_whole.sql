-- flow_claim.sql for a queue whose limits have no partitions (oban_py/flow), the same rules
-- without partition keys: the room left is one number, the smaller of what the global limit
-- and the rate limit leave (a NULL limit leaves room for all), and the next jobs up to it are
-- claimed. Lighter to plan and to run than the partitioned claim, which ranks every job it
-- looks at by key. The caller holds the queue's advisory lock for the transaction.
WITH clock AS MATERIALIZED (
    SELECT timezone('UTC', clock_timestamp()) AS at
),
room AS MATERIALIZED (
    SELECT least(
        %(demand)s::int,
        %(global)s::int - (
            SELECT count(*)
            FROM {prefix}.oban_jobs AS j
            WHERE j.state = 'executing'
              AND j.queue = %(queue)s
              AND j.attempted_by[2] = ANY(ARRAY(
                  SELECT h.uuid::text
                  FROM {prefix}.oban_py_heartbeats AS h, clock
                  WHERE h.queue = %(queue)s
                    AND h.updated_at >= clock.at - make_interval(secs => %(ttl)s)
              ))
              -- Ended on this node, their outcomes not written yet: they run no more.
              AND NOT j.id = ANY(%(finished)s::bigint[])
        )::int,
        %(rate)s::int - (
            SELECT count(*)
            FROM {prefix}.oban_py_flow_starts AS s, clock
            WHERE s.queue = %(queue)s
              AND s.started_at > clock.at - make_interval(secs => %(period)s)
        )::int
    ) AS n
),
-- The next `demand` jobs in the queue's order, then the first `room` of them: a LIMIT the
-- planner knows (demand) keeps the plan a walk down the index, whatever the room.
picked AS MATERIALIZED (
    SELECT j.id, j.priority, j.scheduled_at
    FROM {prefix}.oban_jobs AS j
    WHERE j.state = 'available'
      AND j.queue = %(queue)s
    ORDER BY j.priority, j.scheduled_at, j.id
    LIMIT %(demand)s
),
chosen AS MATERIALIZED (
    SELECT p.id, '' AS rkey
    FROM picked AS p
    ORDER BY p.priority, p.scheduled_at, p.id
    LIMIT greatest((SELECT n FROM room), 0)
),
{flow_take}
