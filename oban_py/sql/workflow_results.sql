-- The named jobs of one workflow with their state and recorded result (meta.return, Base64 of
-- the Erlang term, as Oban Pro records it).
SELECT j.meta->>'name' AS name, j.state::text AS state, j.meta->>'return' AS recorded
FROM {prefix}.oban_jobs AS j
WHERE j.meta @> jsonb_build_object('workflow_id', %(workflow_id)s::text)
  AND j.meta->>'name' = ANY(%(names)s::text[])
