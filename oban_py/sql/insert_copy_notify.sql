-- After a COPY of plain jobs (insert_copy.sql): tell producers about every queue that gained an
-- available job, as insert_jobs.sql does, byte for byte Elixir's payload: {{"queue":"<queue>"}}
-- (Jason writes no spaces). In the COPY's transaction: delivered on commit, never after a failure.
SELECT count(pg_notify(%(channel)s, '{{"queue":' || to_json(q.queue)::text || '}}'))
FROM unnest(%(queues)s::text[]) AS q(queue)
