INSERT INTO {prefix}.oban_py_heartbeats AS h (uuid, node, queue, name, started_at, updated_at)
SELECT b.uuid, %(node)s, b.queue, %(name)s, b.started_at, timezone('UTC', now())
FROM unnest(%(uuids)s::uuid[], %(queues)s::text[], %(started)s::timestamp[])
  AS b (uuid, queue, started_at)
ON CONFLICT (uuid) DO UPDATE SET updated_at = EXCLUDED.updated_at
