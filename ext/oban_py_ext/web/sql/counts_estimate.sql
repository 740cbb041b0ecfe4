-- The planner's estimate of the jobs of one queue in one state, from the table's statistics
-- (what oban_met's reporter does above its estimate limit): reads no row.
EXPLAIN (FORMAT JSON)
SELECT 1 FROM {prefix}.oban_jobs
WHERE state = %(state)s::{prefix}.oban_job_state AND queue = %(queue)s
