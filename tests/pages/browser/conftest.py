"""The browser tests' app: one SQLite FILE shared by the test, the live server thread and
the worker process, with CSRF on as in production."""
from __future__ import annotations

import pytest


@pytest.fixture
def database_url(tmp_path):
    return f"sqlite:///{tmp_path / 'browser.sqlite'}"


@pytest.fixture
def app_config():
    return {"WTF_CSRF_ENABLED": True}
