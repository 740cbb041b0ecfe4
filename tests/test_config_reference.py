"""docs/configuration.md is generated from the Config models: every option, with its default."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from pydantic import BaseModel

from oban_py.config import Config, LifelineConfig, PrunerConfig, QueueConfig

ROOT = Path(__file__).resolve().parent.parent
MODELS: list[tuple[str, type[BaseModel]]] = [
    ("", Config),
    ("queues.<name>.", QueueConfig),
    ("pruner.", PrunerConfig),
    ("lifeline.", LifelineConfig),
]


@pytest.fixture(scope="module")
def hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "config_reference", ROOT / "docs" / "hooks" / "config_reference.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rows(rendered: str) -> dict[str, list[str]]:
    found = {}
    for line in rendered.splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            found[cells[0].strip("`")] = cells
    return found


@pytest.mark.parametrize(("prefix", "model"), MODELS)
def test_every_option_is_listed_with_its_default_and_a_meaning(
    hook: ModuleType, prefix: str, model: type[BaseModel]
) -> None:
    listed = rows(hook.render())
    for name, field in model.model_fields.items():
        row = listed[f"{prefix}{name}"]
        assert field.description, f"{model.__name__}.{name} has no docstring"
        assert len(row) == 4, name
        assert row[3], name
        if field.default_factory is None and name != "node":
            plain = row[2].strip("`").strip('"').replace("_", "")
            assert plain == str(field.default).replace("_", ""), (name, row[2])


def test_nothing_is_listed_that_the_models_lack(hook: ModuleType) -> None:
    expected = {f"{p}{n}" for p, m in MODELS for n in m.model_fields}
    assert set(rows(hook.render())) == expected


def test_the_page_keeps_its_marker_and_is_built_with_the_hook(hook: ModuleType) -> None:
    assert hook.MARKER in (ROOT / "docs" / "configuration.md").read_text()
    mkdocs = (ROOT / "mkdocs.yml").read_text()
    assert "docs/hooks/config_reference.py" in mkdocs
    assert "configuration.md" in mkdocs


def test_the_hook_refuses_a_page_without_its_marker(hook: ModuleType) -> None:
    class File:
        src_uri = "configuration.md"

    class Page:
        file = File()

    with pytest.raises(ValueError, match="marker"):
        hook.on_page_markdown("# Configuration\n", Page(), None, None)
    assert hook.MARKER not in hook.on_page_markdown(hook.MARKER, Page(), None, None)
