-- Inline testing mode: the id of the caller's innermost open transaction, a savepoint's own when
-- one is open (a row written assigns it one: its xmin), so that held jobs run once it commits
-- with its transaction, and never when that savepoint rolls back. As an xid8: the epoch of the
-- transaction's, the low 32 bits of the row's xmin.
INSERT INTO pg_temp.oban_py_testing_marks VALUES (1)
RETURNING ((pg_current_xact_id()::text::bigint >> 32) << 32) | xmin::text::bigint
