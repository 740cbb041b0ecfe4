-- Publish a batch of already encoded payloads on one channel in one round trip, one NOTIFY per
-- payload as Elixir does. Inside a transaction Postgres delivers them on commit, and not at all
-- on rollback.
SELECT pg_notify(%(channel)s, payload)
FROM unnest(%(payloads)s::text[]) AS payload
