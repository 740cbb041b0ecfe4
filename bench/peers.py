"""Side-by-side runs through other libraries (``--peers``): NOT DONE YET.

Planned: drive ``oban`` 0.7.0 (PyPI, Python >= 3.12, in its own venv at /tmp/peer-oban) and
``pgqueuer`` through the same drain and insert scenarios with a small script run by that
interpreter, and print our/peer ratios from the same run, skipping a peer that cannot be
installed. Until then ``--peers`` says so and measures nothing.
"""

from __future__ import annotations

from typing import Any

from bench.db import BenchDatabase


def run(bench: BenchDatabase, *, runs: int, jobs: int, ours: dict[str, Any]) -> dict[str, Any]:
    print("peers: side-by-side mode is not implemented yet (see bench/peers.py); skipped")
    return {"skipped": "not implemented"}
