-- Of the workflows in %(workflows)s, those with jobs left to finish: any state but completed,
-- cancelled and discarded.
SELECT DISTINCT j.meta->>'workflow_id' AS workflow_id
FROM unnest(%(workflows)s::text[]) AS w(id)
JOIN {prefix}.oban_jobs AS j ON j.meta @> jsonb_build_object('workflow_id', w.id)
WHERE j.state NOT IN ('completed', 'cancelled', 'discarded')
