-- Nodes with a live heartbeat row: Python nodes (Elixir writes none). A few rows per node.
SELECT DISTINCT node
FROM {prefix}.oban_py_heartbeats
WHERE updated_at > timezone('UTC', now()) - interval '5 minutes'
