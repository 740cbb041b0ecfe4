-- Take the advisory lock of every unique job of a call, waiting for each, in the order given:
-- the client sends the keys distinct and ascending, so every transaction that waits takes its
-- locks in one global order and none can wait on another in a cycle. Used only in transactions
-- the insert engine opened itself (they hold nothing else). A function scan returns the array in
-- order and the aggregate consumes rows in scan order, so the locks are taken in that order.
SELECT count(*)
FROM (SELECT pg_advisory_xact_lock(k) FROM unnest(%(keys)s::bigint[]) AS k) AS locked
