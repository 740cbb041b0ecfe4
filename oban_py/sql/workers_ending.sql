-- Stored worker names ending in ``.<tail>``: what ``oban-py jobs --worker Mailer`` may have meant.
SELECT DISTINCT worker
FROM {prefix}.oban_jobs
WHERE right(worker, length(%(tail)s::text) + 1) = '.' || %(tail)s::text
ORDER BY worker
LIMIT 5
