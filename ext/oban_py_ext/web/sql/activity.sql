-- Finished attempts per minute over the last hour: completed jobs by completed_at, and failed
-- attempts by the time of their errors entry (every failed attempt appends one, whatever the
-- job's state now: retried, completed later, discarded). A failure within the hour means the
-- job's latest attempt began within it too, which bounds the rows read. An entry's "at" is
-- matched as text against the hour's minutes ("2026-11-23T09:18"), so a hostile value in a row
-- is simply not counted instead of failing a cast. Minutes are counted back from now, 0 = the
-- current minute.
WITH bounds AS (
    SELECT timezone('UTC', now()) AS now_utc
),
minutes AS (
    SELECT n AS minutes_ago,
           to_char(date_trunc('minute', b.now_utc) - make_interval(mins => n),
                   'YYYY-MM-DD"T"HH24:MI') AS minute
    FROM bounds AS b, generate_series(0, 59) AS n
),
finished AS (
    SELECT floor(extract(epoch FROM (b.now_utc - j.completed_at)) / 60)::int AS minutes_ago,
           1 AS done, 0 AS failed
    FROM {prefix}.oban_jobs AS j, bounds AS b
    WHERE j.state = 'completed'
      AND j.completed_at >= b.now_utc - interval '1 hour'
    UNION ALL
    SELECT m.minutes_ago, 0, 1
    FROM {prefix}.oban_jobs AS j
    CROSS JOIN bounds AS b
    CROSS JOIN LATERAL unnest(j.errors) AS entry
    JOIN minutes AS m ON m.minute = left(entry ->> 'at', 16)
    WHERE j.attempted_at >= b.now_utc - interval '1 hour'
      AND cardinality(j.errors) > 0
)
SELECT f.minutes_ago,
       sum(f.done)::bigint AS completed,
       sum(f.failed)::bigint AS failed
FROM finished AS f
GROUP BY 1
ORDER BY 1
