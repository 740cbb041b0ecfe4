INSERT INTO {prefix}.oban_jobs (state, queue, worker, args, meta, tags, priority, max_attempts)
VALUES (
  'available', %(queue)s, %(worker)s, %(args)s::jsonb, %(meta)s::jsonb, %(tags)s::text[],
  %(priority)s, %(max_attempts)s
)
RETURNING id
