-- A stopping node gives up its producers' rows. A producer that left jobs executing (grace
-- exceeded) keeps its row, aged past any ttl, so the leader rescues them on its next pass; the
-- others are deleted, having nothing to rescue.
WITH busy AS (
  UPDATE {prefix}.oban_py_heartbeats AS h
  SET updated_at = '-infinity'
  WHERE h.uuid = ANY(%(uuids)s::uuid[])
    AND EXISTS (
      SELECT 1 FROM {prefix}.oban_jobs AS j
      WHERE j.state = 'executing' AND j.attempted_by[2] = h.uuid::text
    )
  RETURNING h.uuid
)
DELETE FROM {prefix}.oban_py_heartbeats AS h
WHERE h.uuid = ANY(%(uuids)s::uuid[])
  AND h.uuid NOT IN (SELECT uuid FROM busy)
