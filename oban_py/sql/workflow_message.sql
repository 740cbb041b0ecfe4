-- Deliver a message to the held jobs of one workflow that wait for it by name (meta.wait_message):
-- the payload is kept in their meta (`message`), whether or not their dependencies completed yet,
-- so a message sent before its wait is reached is not lost. A later message of the same name
-- replaces it while the job is still held. The releasers are woken on commit.
WITH delivered AS (
    UPDATE {prefix}.oban_jobs AS j
    SET meta = j.meta || jsonb_build_object(
        'message', jsonb_build_object('name', %(name)s::text, 'payload', %(payload)s::jsonb)
    )
    WHERE j.meta @> jsonb_build_object(
            'workflow_id', %(workflow_id)s::text, 'wait_message', %(name)s::text
          )
      AND j.state = 'suspended'
    RETURNING j.id
),
notified AS (
    SELECT pg_notify(%(channel)s, %(wake)s)
    FROM (SELECT 1 FROM delivered LIMIT 1) AS any_delivered
)
SELECT d.id
FROM delivered AS d, (SELECT count(*) FROM notified) AS sent
ORDER BY d.id
