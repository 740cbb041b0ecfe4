-- How many jobs a bulk action on a filter would change, counted up to a cap (the bulk limit):
-- the confirm shows "1,234 jobs" or "at least 100,000". Same conditions as jobs_page.sql.
SELECT count(*) AS count
FROM (SELECT 1 FROM {prefix}.oban_jobs WHERE {where} LIMIT %(cap)s) AS matching
