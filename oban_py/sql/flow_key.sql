-- A part, not a statement (sql/__init__.py places it where a statement writes {flow_key_g} or
-- {flow_key_r}): the partition key of job `p` under its queue's global (g_) or rate (r_)
-- limit, the same text the claim counts by and the starts log stores. '' for a limit without
-- partitions, else the JSON array of its worker and the values of the given args keys (all of
-- its args when no key is given).
CASE WHEN %(side_part)s THEN jsonb_build_array(
    CASE WHEN %(side_worker)s THEN p.worker END,
    CASE WHEN %(side_args)s THEN COALESCE(
        (SELECT jsonb_object_agg(k, p.args -> k) FROM unnest(%(side_keys)s::text[]) AS k),
        p.args) END)::text
ELSE '' END
