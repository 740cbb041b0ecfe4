-- Store settings of a queue for the whole cluster (`--persist`): merged into what is stored, so
-- a persisted pause keeps a persisted limit. Read by every node at start (queue_settings_get).
INSERT INTO {prefix}.oban_py_queues AS q (name, opts, updated_at)
VALUES (%(queue)s, %(opts)s::jsonb, timezone('UTC', now()))
ON CONFLICT (name) DO UPDATE
SET opts = q.opts || EXCLUDED.opts,
    updated_at = EXCLUDED.updated_at
