-- Finished attempts per minute over the last hour: completed jobs by completed_at, failed
-- attempts as the jobs whose latest attempt, started in that minute, failed (retryable or
-- discarded). Minutes are counted back from now, 0 = the current minute.
WITH bounds AS (
    SELECT timezone('UTC', now()) AS now_utc
),
finished AS (
    SELECT j.completed_at AS at, 1 AS done, 0 AS failed
    FROM {prefix}.oban_jobs AS j, bounds AS b
    WHERE j.state = 'completed'
      AND j.completed_at >= b.now_utc - interval '1 hour'
    UNION ALL
    SELECT j.attempted_at, 0, 1
    FROM {prefix}.oban_jobs AS j, bounds AS b
    WHERE j.state IN ('retryable', 'discarded')
      AND j.attempted_at >= b.now_utc - interval '1 hour'
)
SELECT floor(extract(epoch FROM (b.now_utc - f.at)) / 60)::int AS minutes_ago,
       sum(f.done)::bigint AS completed,
       sum(f.failed)::bigint AS failed
FROM finished AS f, bounds AS b
GROUP BY 1
ORDER BY 1
