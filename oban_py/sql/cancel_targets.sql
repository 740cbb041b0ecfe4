-- A part, not a statement (sql/__init__.py places it where job_cancel.sql and
-- workflow_cancel.sql name it): cancels the rows of `targets` (id, state), asks every node to
-- kill the ones that were executing with Elixir's pkill signal,
-- {{"action":"pkill","job_id":N}} (Jason's sorted keys, no spaces), and returns each cancelled
-- id with the state it left.
cancelled AS (
    UPDATE {prefix}.oban_jobs AS j
    SET state = 'cancelled',
        cancelled_at = timezone('UTC', now())
    FROM targets AS t
    WHERE j.id = t.id
    RETURNING j.id, t.state AS previous_state
),
signalled AS (
    SELECT pg_notify(%(channel)s, '{{"action":"pkill","job_id":' || c.id::text || '}}')
    FROM cancelled AS c
    WHERE c.previous_state = 'executing'
)
SELECT c.id, c.previous_state::text AS previous_state
FROM cancelled AS c, (SELECT count(*) FROM signalled) AS sent
ORDER BY c.id
