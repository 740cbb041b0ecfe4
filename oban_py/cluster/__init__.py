"""The cluster duties a node runs beside its queues (peer, stager, pruner, lifeline, cron,
sonar, gossip, metrics, cronitor), built on the small contract in ``contract.py``.
"""
