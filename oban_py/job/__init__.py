"""The job model: ``Job``, unique options, JSON and Erlang terms, errors, backoff, and
what ``process`` may return. Below everything else: it imports nothing of the runtime.
"""
