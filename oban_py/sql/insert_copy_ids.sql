-- Before a batch of plain jobs goes in by COPY (insert/copy_text.py): reserve its ids, in
-- ascending order, from the sequence behind oban_jobs.id (whatever the prefix calls it), and read
-- the transaction's time, which the table's defaults write.
-- The COPY leaves inserted_at, and every other column at its default throughout the batch, to
-- the table, as insert_job_defaults.sql does; it is taken only when those defaults are Elixir's
-- migrations' own, rows go as UTF-8 and nothing about the table makes COPY differ from INSERT.
-- Otherwise no id is taken (ids NULL):
-- the batch takes the INSERT, which sends every column it can, and no id is lost.
WITH target AS MATERIALIZED (
    SELECT pg_get_serial_sequence(%(table)s, 'id')::regclass AS seq,
           current_setting('client_encoding') = 'UTF8'
           -- What COPY does not do as INSERT does: row security policies (it refuses the
           -- table), rules on insert (it ignores them), a view's triggers.
           AND (SELECT c.relkind IN ('r', 'p') AND NOT c.relrowsecurity
                FROM pg_class AS c WHERE c.oid = %(table)s::regclass)
           AND NOT EXISTS (SELECT FROM pg_rewrite AS r
                           WHERE r.ev_class = %(table)s::regclass AND r.ev_type = '3')
           AND (SELECT count(*) = 7
                FROM pg_attrdef AS d
                JOIN pg_attribute AS a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
                WHERE d.adrelid = %(table)s::regclass
                  AND CASE a.attname
                        WHEN 'state' THEN pg_get_expr(d.adbin, d.adrelid)
                                          LIKE '''available''::%%oban_job_state'
                        WHEN 'meta' THEN pg_get_expr(d.adbin, d.adrelid) = '''{{}}''::jsonb'
                        WHEN 'tags' THEN pg_get_expr(d.adbin, d.adrelid) = 'ARRAY[]::text[]'
                        WHEN 'max_attempts' THEN pg_get_expr(d.adbin, d.adrelid) = '20'
                        WHEN 'priority' THEN pg_get_expr(d.adbin, d.adrelid) = '0'
                        WHEN 'inserted_at' THEN pg_get_expr(d.adbin, d.adrelid)
                                                = 'timezone(''UTC''::text, now())'
                        WHEN 'scheduled_at' THEN pg_get_expr(d.adbin, d.adrelid)
                                                 = 'timezone(''UTC''::text, now())'
                      END) AS standard
)
SELECT CASE WHEN t.standard AND t.seq IS NOT NULL
            -- nextval in one session only grows: the rows' order is the ids' order. (The
            -- aggregate reads a column of its own level: of t's, it would group the outer row.)
            THEN (SELECT array_agg(n.id)
                  FROM (SELECT nextval(t.seq) AS id FROM generate_series(1, %(count)s::int)) AS n)
       END AS ids,
       timezone('UTC', now()) AS now
FROM target AS t
