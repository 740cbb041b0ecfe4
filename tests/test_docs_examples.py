"""The Python examples of the pages newcomers copy from are at least valid Python."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = ["migrating.md", "testing.md", "integrations.md", "schema.md"]


def blocks(page: str) -> list[tuple[int, str]]:
    text = (DOCS / page).read_text()
    return [
        (text.count("\n", 0, m.start()) + 1, m.group(1))
        for m in re.finditer(r"```python\n(.*?)```", text, flags=re.S)
    ]


@pytest.mark.parametrize("page", PAGES)
def test_every_python_example_compiles(page: str) -> None:
    found = blocks(page)
    assert found
    for line, code in found:
        try:
            compile(code, f"{page}:{line}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        except SyntaxError as error:
            pytest.fail(f"docs/{page}, the example at line {line}: {error}")


def test_the_migrating_page_writes_each_task_in_all_four() -> None:
    text = (DOCS / "migrating.md").read_text()
    tasks = re.split(r"\n## \d\. ", text)[1:]
    assert len(tasks) == 5
    for task in tasks:
        for tool in ("**Celery**", "**RQ**", "**django-tasks**", "**oban_py**"):
            assert tool in task, task.splitlines()[0]
