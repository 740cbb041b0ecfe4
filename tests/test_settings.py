"""Configuration precedence: arguments > environment > oban.toml > [tool.oban] > defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from oban_py.settings import SettingsError, load_config, parse_queues


def write(path: Path, text: str) -> None:
    path.write_text(text.strip() + "\n")


def test_defaults_apply_when_no_source_sets_anything(tmp_path: Path) -> None:
    config = load_config(env={}, cwd=tmp_path)
    assert config.dsn is None
    assert config.prefix == "public"
    assert config.queues == {}


def test_each_source_overrides_the_one_below_it(tmp_path: Path) -> None:
    write(
        tmp_path / "pyproject.toml",
        """
        [tool.oban]
        prefix = "from_pyproject"
        node = "from_pyproject"
        name = "from_pyproject"
        poll_interval = 9
        """,
    )
    write(tmp_path / "oban.toml", 'prefix = "from_toml"\nnode = "from_toml"\nname = "from_toml"')
    env = {"OBAN_NODE": "from_env", "OBAN_NAME": "from_env"}
    config = load_config({"name": "from_args", "node": None}, env=env, cwd=tmp_path)
    assert config.poll_interval == 9  # only pyproject sets it
    assert config.prefix == "from_toml"
    assert config.node == "from_env"  # an argument given as None does not count
    assert config.name == "from_args"


def test_dsn_comes_from_oban_dsn_before_database_url(tmp_path: Path) -> None:
    both = {"OBAN_DSN": "postgresql://a/x", "DATABASE_URL": "postgresql://b/y"}
    assert load_config(env=both, cwd=tmp_path).dsn == "postgresql://a/x"
    only_url = {"DATABASE_URL": "postgresql://b/y"}
    assert load_config(env=only_url, cwd=tmp_path).dsn == "postgresql://b/y"


def test_queues_from_env_and_toml_use_the_cli_spec(tmp_path: Path) -> None:
    write(tmp_path / "oban.toml", 'queues = "alpha:3"')
    assert load_config(env={}, cwd=tmp_path).queues["alpha"].limit == 3
    config = load_config(env={"OBAN_QUEUES": "mailers:10, default"}, cwd=tmp_path)
    assert {q: c.limit for q, c in config.queues.items()} == {"mailers": 10, "default": 10}


def test_nested_fields_merge_across_sources(tmp_path: Path) -> None:
    write(tmp_path / "oban.toml", "[pruner]\nmax_age = 60\n")
    config = load_config(env={"OBAN_PRUNER__LIMIT": "5"}, cwd=tmp_path)
    assert config.pruner.max_age == 60
    assert config.pruner.limit == 5


def test_invalid_settings_name_the_field_and_reason(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"poll_interval: Input should be greater than 0"):
        load_config({"poll_interval": -1}, env={}, cwd=tmp_path)
    with pytest.raises(SettingsError, match=r"pruner.max_age: Input should be a valid number"):
        load_config(env={"OBAN_PRUNER__MAX_AGE": "soon"}, cwd=tmp_path)


@pytest.mark.parametrize(
    ("spec", "message"),
    [("mailers:ten", "limit of 'mailers' must be a whole number"), (":5", "empty queue name")],
)
def test_bad_queue_specs_are_explained(spec: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        parse_queues(spec)
