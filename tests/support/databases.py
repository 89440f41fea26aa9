"""Scratch PostgreSQL databases for tests: one of the test's own, dropped afterwards,
so parallel runs on one server never collide. Without TEST_DATABASE_URL the test is skipped."""
from __future__ import annotations

import contextlib
import os
import uuid

import pytest
from sqlalchemy.engine import make_url

from deltacrown.config import normalize_database_url

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")


@contextlib.contextmanager
def scratch_postgres_database(prefix: str = "dc_test"):
    """Create an empty database on the TEST_DATABASE_URL server; yield its URL; drop it.
    Skips the test (or the fixture's scope) when TEST_DATABASE_URL is unset."""
    import psycopg

    if not TEST_DATABASE_URL:
        pytest.skip("PostgreSQL tests need TEST_DATABASE_URL (e.g. postgresql://postgres@127.0.0.1/test)")

    base = make_url(normalize_database_url(TEST_DATABASE_URL))
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin_dsn = base.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
