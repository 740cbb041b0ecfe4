"""Benchmarks of oban_py: ``python3 dev.py bench`` (``python -m bench``); see bench/README.md."""
