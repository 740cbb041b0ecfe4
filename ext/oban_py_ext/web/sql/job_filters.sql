-- One condition per job list filter, as "name: condition"; jobs_page.sql joins those in use
-- with AND. Values are parameters; args and tags match as subsets (GIN containment), text
-- search reads the args' JSON text (no index can serve a substring). Elixir's schema indexes
-- state, queue, args and meta only: worker, tags, text, node, priority, attempt and the time
-- range are checked row by row, so the dashboard adds the low/high window of ids to them
-- (at most Reads.scan rows read on the primary key's index). The "*_can_change" lines are
-- the states job_retry.sql, job_cancel.sql and job_delete.sql change (oban_py/sql): a bulk
-- action's count and batches take only those. They name the states kept (every other value of
-- oban_job_state) rather than those left out, so the state/queue index finds them: a NOT IN
-- reads the whole table for a count of a few jobs among millions completed.
state: state = %(state)s
queue: queue = %(queue)s
worker: (worker = %(worker)s OR right(worker, length(%(worker)s::text) + 1) = '.' || %(worker)s::text)
tags: tags @> %(tags)s::text[]
args: args @> %(args)s::jsonb
text: strpos(args::text, %(text)s::text) > 0
node: attempted_by[1] = %(node)s::text
priority: priority = %(priority)s::integer
attempt: attempt = %(attempt)s::integer
since: {column} >= %(since)s::timestamp
until: {column} < %(until)s::timestamp
low: id >= %(low)s::bigint
high: id < %(high)s::bigint
ids: id = ANY(%(ids)s::bigint[])
key: (coalesce({column}, '-infinity'), id) < (%(key_at)s::timestamp, %(key_id)s::bigint)
retry_can_change: state IN ('scheduled', 'retryable', 'completed', 'discarded', 'cancelled', 'suspended')
cancel_can_change: state IN ('available', 'scheduled', 'executing', 'retryable', 'suspended')
delete_can_change: state IN ('available', 'scheduled', 'retryable', 'completed', 'discarded', 'cancelled', 'suspended')
