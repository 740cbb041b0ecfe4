"""The node: an ``Oban`` instance, the owner of its queues' lives, one producer per queue,
the attempt from claim to outcome, and the acker that writes outcomes.
"""
