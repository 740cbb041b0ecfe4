-- Elixir's election step 2: take a free name, or renew it only if we already hold it.
-- A row is affected (rowcount 1) iff this node leads.
INSERT INTO {prefix}.oban_peers AS p (name, node, started_at, expires_at)
VALUES (
  %(name)s,
  %(node)s,
  timezone('UTC', now()),
  timezone('UTC', now()) + make_interval(secs => %(interval)s)
)
ON CONFLICT (name) DO UPDATE SET expires_at = EXCLUDED.expires_at
WHERE p.node = EXCLUDED.node
