-- Who leads: oban_peers holds one row per peer name (Elixir's "Oban", Python's "Oban.py"),
-- a few rows whatever the size of oban_jobs.
SELECT name, node
FROM {prefix}.oban_peers
WHERE expires_at > timezone('UTC', now())
ORDER BY name
