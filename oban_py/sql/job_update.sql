-- Write the updatable fields of one job (Elixir's update_job subset), already validated.
UPDATE {prefix}.oban_jobs
SET args = %(args)s::jsonb,
    max_attempts = %(max_attempts)s,
    meta = %(meta)s::jsonb,
    priority = %(priority)s,
    queue = %(queue)s,
    scheduled_at = %(scheduled_at)s,
    tags = ARRAY(SELECT jsonb_array_elements_text(%(tags)s::jsonb)),
    worker = %(worker)s
WHERE id = %(id)s
RETURNING *
