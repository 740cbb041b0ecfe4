-- A part, not a statement (sql/__init__.py places it where fetch_jobs.sql,
-- drain_fetch_scoped.sql and flow_take.sql name it): what every claim writes, Elixir's Basic
-- engine's columns, for the rows of `subset` at the statement's `clock`. The
-- attempt < max_attempts guard keeps a row from ever exceeding its attempts.
UPDATE {prefix}.oban_jobs AS j
SET state = 'executing',
    attempted_at = (SELECT at FROM clock),
    attempted_by = ARRAY[%(node)s, %(uuid)s]::text[],
    attempt = j.attempt + 1
FROM subset
WHERE j.id = subset.id
  AND j.attempt < j.max_attempts
RETURNING j.*
