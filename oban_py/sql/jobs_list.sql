-- Jobs for ``oban-py jobs`` and the testing helpers, newest first; a NULL filter matches all.
-- args, meta and tags match as subsets (jsonb containment), as Elixir's assert_enqueued does.
SELECT *
FROM {prefix}.oban_jobs
WHERE (%(states)s::text[] IS NULL OR state::text = ANY(%(states)s::text[]))
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(worker)s::text IS NULL OR worker = %(worker)s::text)
  AND (%(args)s::jsonb IS NULL OR args @> %(args)s::jsonb)
  AND (%(meta)s::jsonb IS NULL OR meta @> %(meta)s::jsonb)
  AND (%(tags)s::text[] IS NULL OR tags @> %(tags)s::text[])
  AND (%(priority)s::int IS NULL OR priority = %(priority)s::int)
ORDER BY id DESC
LIMIT %(limit)s
