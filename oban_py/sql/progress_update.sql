-- Store a running job's progress in meta.progress (a key Elixir ignores) and announce it to
-- waiters on our own channel, in one statement. Only the attempt still executing may write: a
-- report that arrives after the job's outcome, or from an attempt rescued meanwhile, changes
-- nothing and announces nothing. Nor does a report older than the one stored for the same attempt
-- ((attempt, seq) orders them; jsonb comparison, so a foreign meta.progress never raises).
WITH updated AS (
    UPDATE {prefix}.oban_jobs
    SET meta = coalesce(meta, '{{}}'::jsonb) || jsonb_build_object('progress', %(progress)s::jsonb)
    WHERE id = %(id)s AND attempt = %(attempt)s AND state = 'executing'
      AND NOT coalesce(
          meta -> 'progress' -> 'attempt' = to_jsonb(%(attempt)s::int)
          AND meta -> 'progress' -> 'seq' >= to_jsonb(%(seq)s::bigint),
          false
      )
    RETURNING id
)
SELECT pg_notify(%(channel)s, %(payload)s) FROM updated
