-- One release step for the workflows in %(workflows)s (docs/workflows.md): every job of theirs
-- held in `suspended` is judged by the current state of its dependencies, read by name among
-- the jobs of its workflow (the GIN index on meta finds them):
--   * a dependency counts as done when `completed`, or `cancelled` / `discarded` / missing
--     (deleted, pruned) while the job's meta says to ignore that (ignore_cancelled,
--     ignore_discarded, ignore_deleted);
--   * one that is cancelled, discarded or missing and not ignored fails the job: it becomes
--     `discarded` when its meta says on_failure = "discard", `cancelled` otherwise;
--   * all done, and the message it waits for (meta.wait_message) arrived if it waits for one:
--     `available` (or `scheduled` when its scheduled_at, or release + meta.delay seconds, is
--     still ahead);
--   * all done but the message not come by meta.wait_until (epoch seconds): meta.on_timeout
--     applies ("run": released without it, "discard": discarded, otherwise cancelled);
--   * anything else (a dependency still waiting, running or retrying): it stays held.
-- Held rows are locked in id order before they are judged, so two passes cannot deadlock, and the
-- UPDATE is guarded by state = 'suspended': whichever pass comes second finds the row already
-- moved and leaves it, so a job is released or failed exactly once. Passes run after the acks
-- that woke them committed, so the later of two dependencies finishing together always sees
-- both. A job failed here fails its own dependents on the next step: the caller repeats this
-- statement while it fails any.
WITH held AS (
    -- Only the scalars judged below: grouping or hashing whole meta documents (a fan-in's lists
    -- a thousand names) cost more than everything else together. A value of the wrong JSON type
    -- reads as its default rather than failing the statement for every workflow.
    SELECT j.id,
           j.meta->>'workflow_id' AS workflow_id,
           CASE WHEN jsonb_typeof(j.meta->'deps') = 'array' THEN j.meta->'deps'
                ELSE '[]'::jsonb END AS deps,
           j.meta->'ignore_cancelled' = 'true'::jsonb AS ignore_cancelled,
           j.meta->'ignore_discarded' = 'true'::jsonb AS ignore_discarded,
           j.meta->'ignore_deleted' = 'true'::jsonb AS ignore_deleted,
           j.meta->>'on_failure' AS on_failure,
           (j.meta ? 'wait_message' AND NOT j.meta ? 'message') AS awaiting,
           (j.meta ? 'wait_message' AND NOT j.meta ? 'message'
            AND CASE WHEN jsonb_typeof(j.meta->'wait_until') = 'number'
                     THEN (j.meta->'wait_until')::numeric < extract(epoch FROM now())
                     ELSE false END) AS timed_out,
           j.meta->>'on_timeout' AS on_timeout
    FROM {prefix}.oban_jobs AS j
    WHERE j.state = 'suspended'
      AND j.meta->>'workflow_id' = ANY(%(workflows)s::text[])
    ORDER BY j.id
    FOR UPDATE
),
flows AS (
    SELECT DISTINCT h.workflow_id FROM held AS h
),
members AS (
    SELECT f.workflow_id, m.meta->>'name' AS name, m.state::text AS state
    FROM flows AS f
    JOIN {prefix}.oban_jobs AS m ON m.meta @> jsonb_build_object('workflow_id', f.workflow_id)
),
deps AS (
    SELECT h.id,
           CASE
               WHEN d.name IS NULL THEN 'done'
               WHEN m.state = 'completed' THEN 'done'
               WHEN m.state = 'cancelled' AND h.ignore_cancelled THEN 'done'
               WHEN m.state = 'discarded' AND h.ignore_discarded THEN 'done'
               WHEN m.state IS NULL AND h.ignore_deleted THEN 'done'
               WHEN m.state IN ('cancelled', 'discarded') OR m.state IS NULL THEN 'failed'
               ELSE 'waiting'
           END AS verdict
    FROM held AS h
    LEFT JOIN LATERAL jsonb_array_elements_text(h.deps) AS d(name) ON true
    LEFT JOIN members AS m ON m.workflow_id = h.workflow_id AND m.name = d.name
),
judged AS (
    SELECT x.id,
           count(*) FILTER (WHERE x.verdict = 'failed') AS failed,
           count(*) FILTER (WHERE x.verdict = 'waiting') AS open
    FROM deps AS x
    GROUP BY x.id
),
verdicts AS (
    SELECT h.id,
           CASE WHEN jd.failed > 0 AND h.on_failure = 'discard' THEN 'discarded'
                WHEN jd.failed > 0 THEN 'cancelled'
                WHEN jd.open = 0 AND NOT h.awaiting THEN 'released'
                WHEN jd.open = 0 AND h.timed_out AND h.on_timeout = 'run' THEN 'released'
                WHEN jd.open = 0 AND h.timed_out AND h.on_timeout = 'discard' THEN 'discarded'
                WHEN jd.open = 0 AND h.timed_out THEN 'cancelled'
           END AS verdict
    FROM held AS h
    JOIN judged AS jd ON jd.id = h.id
),
moved AS (
    UPDATE {prefix}.oban_jobs AS j
    SET state = (CASE v.verdict
                    WHEN 'released' THEN
                        CASE WHEN greatest(j.scheduled_at, timezone('UTC', now())
                                   + make_interval(secs => CASE WHEN jsonb_typeof(j.meta->'delay') = 'number'
                        THEN least(greatest((j.meta->'delay')::numeric, 0), 1e9)::float8
                        ELSE 0 END))
                                  > timezone('UTC', now())
                             THEN 'scheduled' ELSE 'available' END
                    ELSE v.verdict
                 END)::{prefix}.oban_job_state,
        scheduled_at = CASE WHEN v.verdict = 'released'
                            THEN greatest(j.scheduled_at, timezone('UTC', now())
                                 + make_interval(secs => CASE WHEN jsonb_typeof(j.meta->'delay') = 'number'
                        THEN least(greatest((j.meta->'delay')::numeric, 0), 1e9)::float8
                        ELSE 0 END))
                            ELSE j.scheduled_at END,
        cancelled_at = CASE WHEN v.verdict = 'cancelled' THEN timezone('UTC', now()) ELSE j.cancelled_at END,
        discarded_at = CASE WHEN v.verdict = 'discarded' THEN timezone('UTC', now()) ELSE j.discarded_at END
    FROM verdicts AS v
    WHERE j.id = v.id
      AND v.verdict IS NOT NULL
      AND j.state = 'suspended'
    RETURNING j.id, j.state::text AS state, j.queue, j.meta->>'workflow_id' AS workflow_id
),
notified AS (
    -- Byte for byte Elixir's insert payload, once per queue that gained an available job.
    SELECT pg_notify(%(channel)s, '{{"queue":' || to_json(q.queue)::text || '}}')
    FROM (SELECT DISTINCT mv.queue FROM moved AS mv WHERE mv.state = 'available') AS q
)
SELECT mv.id, mv.state, mv.workflow_id
FROM moved AS mv, (SELECT count(*) FROM notified) AS sent
ORDER BY mv.id
