-- Elixir's election step 1: a lease that ran out frees the name for anyone.
DELETE FROM {prefix}.oban_peers
WHERE name = %(name)s AND expires_at < timezone('UTC', now())
