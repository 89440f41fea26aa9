"""Fixtures of the scheduling tests: the app sends email to the loopback SMTP server."""
from __future__ import annotations

import pytest


@pytest.fixture
def app_config(smtp_server):
    return smtp_server.config()
