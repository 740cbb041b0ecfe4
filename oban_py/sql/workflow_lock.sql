-- Serializes appends to one workflow (%(key)s names it), held until the transaction ends: an
-- append reads the workflow's step names after taking it, so a second append of the same name
-- waits, then sees the first one's step. The sign bit is forced on: Elixir Oban's advisory keys
-- (:erlang.phash2, unique jobs) are never negative, so they never meet this one.
SELECT pg_advisory_xact_lock(hashtextextended(%(key)s, 0) | (-9223372036854775808)::bigint)
