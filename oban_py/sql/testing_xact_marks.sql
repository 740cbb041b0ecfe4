-- Inline testing mode: a table of this session's own, whose row gives the id of the caller's
-- innermost open (sub)transaction (testing_xact_id.sql). Temporary: nothing of the schema.
DO $$
BEGIN
    IF to_regclass('pg_temp.oban_py_testing_marks') IS NULL THEN
        CREATE TEMP TABLE oban_py_testing_marks (mark int) ON COMMIT DELETE ROWS;
    END IF;
END
$$
