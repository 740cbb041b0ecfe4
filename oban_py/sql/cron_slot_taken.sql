-- Was this slot of this entry inserted already? The slot is stored in the job's meta
-- (cron_at), so the answer depends on the slot alone: not on when it was inserted (a late slot
-- does not hide the next one), nor on the job's state since (a retried or finished job still
-- holds it). meta @> uses the GIN index on meta.
SELECT 1
FROM {prefix}.oban_jobs
WHERE meta @> %(meta)s::jsonb
  AND worker = %(worker)s
LIMIT 1
