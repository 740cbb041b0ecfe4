-- The lowest and highest id: two reads of the primary key's index, whatever the table's size.
-- Windows of ids (job_filters.sql's low/high) are placed from these.
SELECT min(id) AS low, max(id) AS high FROM {prefix}.oban_jobs
