-- Insert one job whose every other column is its default (state available, empty meta and tags,
-- max_attempts 20, priority 0, scheduled now): the most common enqueue, as insert_job.sql but
-- sending three values rather than nine, and leaving the rest to the table's defaults, which
-- are Elixir's Job defaults as its migrations set them. Positional: queue, worker, args, channel.
INSERT INTO {prefix}.oban_jobs (queue, worker, args)
VALUES (%s, %s, %s::jsonb)
RETURNING id,
          inserted_at,
          scheduled_at,
          -- Byte for byte Elixir's payload: {{"queue":"<queue>"}} (Jason writes no spaces).
          pg_notify(%s, '{{"queue":' || to_json(queue)::text || '}}') AS notified
