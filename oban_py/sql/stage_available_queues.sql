SELECT DISTINCT queue FROM {prefix}.oban_jobs WHERE state = 'available' ORDER BY queue
