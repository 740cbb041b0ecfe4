"""The runnable examples of docs/results.md and docs/progress.md run, and print what they say
(the examples of other pages compile: test_docs_examples.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT


def first_example(page: str) -> str:
    text = (ROOT / "docs" / page).read_text()
    found = re.search(r"```python\n(.*?)```", text, re.S)
    assert found is not None
    return found.group(1)


def run(code: str, dsn: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "DATABASE_URL": dsn},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if not line.startswith("20")]


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        ("results.md", ["3"]),
        (
            "progress.md",
            ["33% image 1 of 3", "67% image 2 of 3", "100% image 3 of 3", "{'resized': 3}"],
        ),
    ],
)
def test_the_page_example_runs(page: str, expected: list[str], dsn: str) -> None:
    assert run(first_example(page), dsn) == expected
