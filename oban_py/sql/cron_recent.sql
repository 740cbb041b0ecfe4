-- Was this entry inserted within the window? Slots of one entry are at least 60 s apart, so a
-- match inside a window shorter than that can only be the current slot.
SELECT 1
FROM {prefix}.oban_jobs
WHERE meta @> %(meta)s::jsonb
  AND worker = %(worker)s
  AND inserted_at > timezone('UTC', now()) - make_interval(secs => %(window)s)
LIMIT 1
