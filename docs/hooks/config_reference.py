"""mkdocs hook: renders the reference of every ``Config`` option into docs/configuration.md.

The page holds a marker; the tables come from the pydantic models at build time (names, types,
constraints, defaults and the attribute docstrings), so the reference cannot drift from the
code. ``tests/test_config_reference.py`` checks the rendering covers every field.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from oban_py.config import Config, LifelineConfig, PrunerConfig, QueueConfig

MARKER = "<!-- config-reference -->"
PAGE = "configuration.md"
#: The nested models, each rendered as its own table under the field that holds it.
SECTIONS: tuple[tuple[str, type[BaseModel]], ...] = (
    ("queues.<name>", QueueConfig),
    ("pruner", PrunerConfig),
    ("lifeline", LifelineConfig),
)
#: Defaults computed per process, shown as what they compute.
COMPUTED = {"node": "`<hostname>.<pid>`"}


def type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f'`"{a}"`' for a in args)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(type_name(a) for a in args)
    if origin is not None:
        inner = ", ".join(type_name(a).strip("`") for a in args)
        return f"`{getattr(origin, '__name__', str(origin))}[{inner}]`"
    if annotation is type(None):
        return "`None`"
    if annotation is Any:
        return "`Any`"
    return f"`{getattr(annotation, '__name__', str(annotation))}`"


def constraints(field: FieldInfo) -> str:
    marks = {"gt": ">", "ge": "≥", "lt": "<", "le": "≤", "min_length": "length ≥"}
    shown = []
    for meta in field.metadata:
        for attribute, sign in marks.items():
            value = getattr(meta, attribute, None)
            if value is not None:
                shown.append(f"{sign} {value:_}" if isinstance(value, int) else f"{sign} {value}")
        if (longest := getattr(meta, "max_length", None)) is not None:
            shown.append(f"length ≤ {longest}")
    return ", ".join(shown)


def default_text(name: str, field: FieldInfo) -> str:
    if name in COMPUTED:
        return COMPUTED[name]
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            return "see below"
        return f"`{value!r}`"
    value = field.default
    if isinstance(value, float) and value.is_integer():
        return f"`{value:_.1f}`"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"`{value:_}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{value!r}`"


def cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def table(model: type[BaseModel], prefix: str = "") -> str:
    rows = ["| option | type | default | meaning |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        kind = type_name(field.annotation)
        if limits := constraints(field):
            kind += f" ({limits})"
        rows.append(
            f"| `{prefix}{name}` | {kind} | {default_text(name, field)} |"
            f" {cell(field.description or '')} |"
        )
    return "\n".join(rows)


def render() -> str:
    """The Markdown the marker stands for: ``Config``'s table, then each nested model's."""
    parts = ["## Options", "", table(Config)]
    for name, model in SECTIONS:
        parts += ["", f"## `{name}`", "", table(model, f"{name}.")]
    return "\n".join(parts) + "\n"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"{PAGE} lost its {MARKER} marker")
    return markdown.replace(MARKER, render())
