"""Clients: insert and manage jobs without running any (``Client``), their pools and the
registry of instances by name.
"""
