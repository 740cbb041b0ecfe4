-- One (state, queue) whose jobs the planner estimates from the table's statistics (what
-- oban_met's reporter does above its estimate limit): only ever EXPLAINed, so it reads no row.
SELECT 1 FROM {prefix}.oban_jobs
WHERE state = {state}::{prefix}.oban_job_state AND queue = {queue}
