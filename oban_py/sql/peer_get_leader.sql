SELECT node FROM {prefix}.oban_peers WHERE name = %(name)s
