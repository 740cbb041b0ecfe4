-- The persisted settings of the queues a starting node runs.
SELECT name, opts
FROM {prefix}.oban_py_queues
WHERE name = ANY(%(queues)s::text[])
