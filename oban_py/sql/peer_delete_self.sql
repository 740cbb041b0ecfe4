DELETE FROM {prefix}.oban_peers WHERE name = %(name)s AND node = %(node)s
