"""pytest-django fixtures of the shop's tests."""

import pytest
from oban_py_ext.django import conf


@pytest.fixture
def oban_dsn(transactional_db: None) -> str:
    """The Django test database, for oban_py's ``oban_testing`` fixture (manual mode inserts
    through its own pool, so the test must commit: ``transactional_db``)."""
    return conf.dsn()
